"""BERT's assignment map, in google-research/bert's official checkpoint names.

`bert/embeddings/{word,token_type,position}_embeddings`,
`bert/embeddings/LayerNorm/{gamma,beta}`, `bert/encoder/layer_N/...` (see
`kzoo.checkpoints.entries.BERT_BLOCK`), `bert/pooler/dense/*`, and the
pretraining heads `cls/predictions/*` and `cls/seq_relationship/*`.

An encoder with Shaw et al.'s relative positions
(`BertConfig.max_relative_position` > 0) adds, per layer,
`bert/encoder/layer_N/attention/self/relative_positions_keys/embeddings` and
`.../relative_positions_values/embeddings` ([2k+1, head_size]; kzoo's names,
see `kzoo.checkpoints.entries.RELATIVE_BLOCK`); without an absolute table
(`use_absolute_positions=false`) there is no `bert/embeddings/position_embeddings`.
A plain BERT checkpoint loaded into a relative encoder reports the relative
embeddings as missing (a strict load fails naming them). Hugging
Face names (`encoder.layer.3.attention.self.query.weight`, with or without a
`bert.` prefix) translate to them with `official_name`.
"""

import re

from kzoo.checkpoints.entries import (Entry, FamilyMap, block_entries, dense_entries, embedding_entries,
                                      norm_entries, single)
from kzoo.layers import MaskedLMHead, NextSentenceHead
from kzoo.models.walk import encoder_parts

WORD_EMBEDDINGS = "bert/embeddings/word_embeddings"

_LAYER = re.compile(r"\.layer\.(\d+)\.")
_SECTIONS = ("embeddings.", "encoder.", "pooler.")
# BertForPreTraining / BertForMaskedLM heads. `cls.predictions.decoder.weight` is
# the tied word table (reported unused); `cls.predictions.decoder.bias` is the
# same tensor as `cls.predictions.bias` (whichever comes second is unused). Torch's seq_relationship
# weight is [2, hidden], as the official checkpoint stores it (no transpose).
_HEADS = {
    "cls.predictions.transform.dense.weight": ("cls/predictions/transform/dense/kernel", True),
    "cls.predictions.transform.dense.bias": ("cls/predictions/transform/dense/bias", False),
    "cls.predictions.transform.LayerNorm.weight": ("cls/predictions/transform/LayerNorm/gamma", False),
    "cls.predictions.transform.LayerNorm.bias": ("cls/predictions/transform/LayerNorm/beta", False),
    "cls.predictions.bias": ("cls/predictions/output_bias", False),
    "cls.predictions.decoder.bias": ("cls/predictions/output_bias", False),
    "cls.seq_relationship.weight": ("cls/seq_relationship/output_weights", False),
    "cls.seq_relationship.bias": ("cls/seq_relationship/output_bias", False),
}


def official_name(hf_name):
    """(official name, transpose?) for a HF BERT weight name, or None."""
    if hf_name in _HEADS:
        return _HEADS[hf_name]
    name = hf_name[len("bert."):] if hf_name.startswith("bert.") else hf_name
    if not name.startswith(_SECTIONS):
        return None
    module, _, leaf = name.rpartition(".")
    module = _LAYER.sub(r".layer_\1.", module + ".").rstrip(".")
    path = "bert/" + module.replace(".", "/")
    if module.endswith("LayerNorm"):
        leaf = {"weight": "gamma", "bias": "beta"}.get(leaf, leaf)
        return (f"{path}/{leaf}", False) if leaf in ("gamma", "beta") else None
    if module.endswith("_embeddings"):
        return (path, False) if leaf == "weight" else None
    if leaf == "weight":
        return f"{path}/kernel", True
    if leaf == "bias":
        return f"{path}/bias", False
    return None


def encoder_entries(encoder):
    """Lists (official name, variable) for every pretrained BERT encoder variable."""
    parts = encoder_parts(encoder)
    entries = embedding_entries("bert/embeddings/", parts.embeddings)
    for i, (block,) in enumerate(parts.block_groups):
        entries += block_entries(f"bert/encoder/layer_{i}/", block)
    for pooler in parts.poolers:
        entries += dense_entries("bert/pooler/dense", pooler.dense)
    return entries


def head_entries(model, encoder=None):
    """Lists (official name, variable) for the pretraining heads in `model`:
    the masked-LM head (`cls/predictions/*`) and the next-sentence head
    (`cls/seq_relationship/*`), when it has them (at most one of each).
    ALBERT's checkpoints use the same names (its sentence-order head has the
    next-sentence head's shape)."""
    entries = []
    for head in single(model, MaskedLMHead, "masked-LM heads"):
        entries += dense_entries("cls/predictions/transform/dense", head.transform)
        entries += norm_entries("cls/predictions/transform/LayerNorm", head.transform_layer_norm)
        entries.append(Entry("cls/predictions/output_bias", head.output_bias))
    for head in single(model, NextSentenceHead, "next-sentence heads"):
        entries += [
            Entry("cls/seq_relationship/output_weights", head.dense.kernel, "transpose"),
            Entry("cls/seq_relationship/output_bias", head.dense.bias),
        ]
    return entries


MAP = FamilyMap("bert", WORD_EMBEDDINGS, True, encoder_entries, head_entries, official_name)
