"""Validates and assigns stored official-layout arrays through the map."""

from kzoo.checkpoints import mapping
from kzoo.checkpoints.report import LoadReport
from kzoo.models.walk import find_encoder

WORD_EMBEDDINGS = "bert/embeddings/word_embeddings"


def assign(model, stored, unmapped, source, strict=False, encoder=None):
    """Assigns pretrained values to `model`'s encoder variables.

    Args:
        model: a keras.Model holding one kzoo BERT encoder.
        stored: {official name: (source name, zero-argument reader of an
            official-layout array)} for every name the source can provide.
        unmapped: source names that map to no official encoder name.
        source: path used in messages and the report.
        strict: raise when any encoder variable gets no value.
        encoder: the encoder sub-model, when the model holds several.

    The pretraining heads (`cls/predictions/*`, `cls/seq_relationship/*`)
    are filled when the model has them and listed as unused when it does not;
    heads the checkpoint lacks are reported as missing (new), even when strict.
    Every shape is checked before any variable is written, so a failed load
    leaves the model as it was.
    """
    encoder = encoder if encoder is not None else find_encoder(model)
    entries = mapping.encoder_entries(encoder)
    absent = [e for e in entries if e.name not in stored]  # strict applies to the encoder only
    entries += mapping.head_entries(model)  # pretraining heads, when the model has them
    present = [e for e in entries if e.name in stored]
    if strict and absent:
        raise ValueError(
            f"{source}: strict load: {len(absent)} encoder variable(s) have no value in the checkpoint: "
            + ", ".join(f"{e.variable.path} (expected {e.name})" for e in absent)
        )
    if not present:
        raise ValueError(
            f"{source}: no encoder variable found in the checkpoint (expected names like {WORD_EMBEDDINGS}); "
            f"it holds e.g. {sorted(unmapped)[:5]}"
        )
    raw = {e.name: stored[e.name][1]() for e in present}
    for entry in present:
        if entry.name == WORD_EMBEDDINGS:
            _check_sizes(entry, raw[entry.name], source)
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


def _check_sizes(entry, value, source):
    """A clearer message than a shape mismatch when the config disagrees."""
    want_vocab, want_hidden = entry.variable.shape
    if tuple(value.shape) != (want_vocab, want_hidden):
        raise ValueError(
            f"{source}: checkpoint {entry.name} has shape {list(value.shape)} "
            f"(vocab_size {value.shape[0]}, hidden_size {value.shape[-1]}), but the model config has "
            f"vocab_size {want_vocab}, hidden_size {want_hidden}: is the bert_config.json the checkpoint's own?"
        )
