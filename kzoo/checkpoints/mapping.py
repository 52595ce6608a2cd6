"""The assignment maps from checkpoint names to kzoo variables, one per family.

Each family's map is a declarative table in its own module: `bert_map`
(google-research/bert's names, `bert/encoder/layer_3/attention/self/query/
kernel`), `albert_map` (google-research/albert's, `bert/encoder/transformer/
group_0/inner_group_0/attention_1/self/query/kernel`), `electra_map`
(google-research/electra's, `electra/encoder/layer_3/...`), `roberta_map`
(RoBERTa and XLM-R), `distilbert_map` and `deberta_map` (DeBERTa-v2/v3) (HF
names only: these families have no official TF1 checkpoints). Each entry says which model variable receives
a value and how the stored array is reshaped: official dense kernels are
[in, out]; Keras' attention kernels split the hidden axis into [heads,
head_size] (`kzoo.checkpoints.entries.Entry`). `family_map(encoder)` picks
the map of an encoder's family; loaders for Hugging Face folders translate
HF names and layouts to the canonical ones and reuse the tables.
"""

from kzoo.checkpoints import albert_map, bert_map, deberta_map, distilbert_map, electra_map, roberta_map
from kzoo.checkpoints.entries import Entry, FamilyMap, checked_value  # noqa: F401  (re-exported)
from kzoo.models.walk import encoder_family

MAPS = {"bert": bert_map.MAP, "albert": albert_map.MAP, "electra": electra_map.MAP, "roberta": roberta_map.MAP,
        "xlm_roberta": roberta_map.MAP, "distilbert": distilbert_map.MAP, "deberta_v2": deberta_map.MAP}


def family_map(encoder_or_family):
    """The `FamilyMap` of a kzoo encoder (its family read off its structure,
    `kzoo.models.encoder_family`) or of a family name."""
    family = encoder_or_family if isinstance(encoder_or_family, str) else encoder_family(encoder_or_family)
    if family not in MAPS:
        raise ValueError(f"no assignment map for family {family!r}; expected one of {sorted(MAPS)}")
    return MAPS[family]


def encoder_entries(encoder):
    """Lists (canonical name, variable) for every pretrained encoder variable,
    in the map of the encoder's family (official names for BERT, ALBERT and
    ELECTRA)."""
    return family_map(encoder).encoder_entries(encoder)


def head_entries(model, encoder=None):
    """The head entries of `model` in the map of its encoder's family (BERT's
    `cls/*` names when `encoder` is not given and the model holds no single
    encoder)."""
    if encoder is None:
        from kzoo.models.walk import find_encoder

        try:
            encoder = find_encoder(model)
        except ValueError:
            return bert_map.head_entries(model)
    return family_map(encoder).head_entries(model, encoder)
