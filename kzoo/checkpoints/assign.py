"""Validates and assigns stored checkpoint-layout arrays through a family's map."""

from kzoo.checkpoints import mapping
from kzoo.checkpoints.bert_map import WORD_EMBEDDINGS  # noqa: F401  (BERT's, kept for callers)
from kzoo.checkpoints.report import LoadReport
from kzoo.models.walk import find_encoder

# The config file a size disagreement most likely comes from, per family.
_CONFIG_FILES = {"bert": "bert_config.json", "albert": "albert_config.json"}


def assign(model, stored, unmapped, source, strict=False, encoder=None):
    """Assigns pretrained values to `model`'s encoder variables.

    Args:
        model: a keras.Model holding one kzoo encoder (of any family).
        stored: {canonical name: (source name, zero-argument reader of an
            array in the checkpoint layout)} for every name the source can
            provide, in the map of the encoder's family
            (`kzoo.checkpoints.mapping.family_map`).
        unmapped: source names that map to no canonical name.
        source: path used in messages and the report.
        strict: raise when any encoder variable gets no value (but those a
            family's checkpoints may lack: `Entry.optional`).
        encoder: the encoder sub-model, when the model holds several.

    The heads of the family's checkpoints (BERT's and ALBERT's `cls/*`,
    ELECTRA's generator and discriminator head, DistilBERT's classifier) are
    filled when the model has them and listed as unused when it does not;
    heads the checkpoint lacks are reported as missing (new), even when
    strict. Every shape is checked before any variable is written, so a
    failed load leaves the model as it was.
    """
    encoder = encoder if encoder is not None else find_encoder(model)
    family = mapping.family_map(encoder)
    entries = family.encoder_entries(encoder)
    absent = [e for e in entries if e.name not in stored and not e.optional]  # strict applies to the encoder only
    entries += family.head_entries(model, encoder)  # pretraining / task heads, when the model has them
    present = [e for e in entries if e.name in stored]
    if strict and absent:
        raise ValueError(
            f"{source}: strict load: {len(absent)} encoder variable(s) have no value in the checkpoint: "
            + ", ".join(f"{e.variable.path} (expected {e.name})" for e in absent)
        )
    if not present:
        raise ValueError(
            f"{source}: no encoder variable found in the checkpoint (expected names like "
            f"{family.word_embeddings}, a {family.family} checkpoint); it holds e.g. {sorted(unmapped)[:5]}"
        )
    raw = {e.name: stored[e.name][1]() for e in present}
    for entry in present:
        if entry.name == family.word_embeddings:
            _check_sizes(entry, raw[entry.name], source, family.family)
    values = [(e, mapping.checked_value(e, raw[e.name], source)) for e in present]
    for entry, value in values:
        entry.variable.assign(value)

    used = {stored[e.name][0] for e in present}
    assigned = {id(e.variable) for e in present}
    return LoadReport(
        source=source,
        loaded=[stored[e.name][0] for e in present],
        unused=sorted([n for n, _ in stored.values() if n not in used] + list(unmapped)),
        missing=[v.path for v in model.weights if id(v) not in assigned],
    )


def _check_sizes(entry, value, source, family):
    """A clearer message than a shape mismatch when the config disagrees."""
    want_vocab, want_width = entry.variable.shape
    if tuple(value.shape) != (want_vocab, want_width):
        width = "embedding_size" if family in ("albert", "electra") else "hidden_size"
        config = _CONFIG_FILES.get(family, "config")
        raise ValueError(
            f"{source}: checkpoint {entry.name} has shape {list(value.shape)} "
            f"(vocab_size {value.shape[0]}, {width} {value.shape[-1]}), but the model config has "
            f"vocab_size {want_vocab}, {width} {want_width}: is the {config} the checkpoint's own?"
        )
