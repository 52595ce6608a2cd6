"""ALBERT's assignment map, in google-research/albert's official checkpoint names.

As `modeling.py` writes them (scope `bert`, as BERT's):

- `bert/embeddings/{word,token_type,position}_embeddings` ([*, embedding_size])
  and `bert/embeddings/LayerNorm/{gamma,beta}`;
- `bert/encoder/embedding_hidden_mapping_in/{kernel,bias}`: the projection
  from embedding_size to hidden_size;
- per shared block `bert/encoder/transformer/group_G/inner_group_J/`:
  `attention_1/self/{query,key,value}/*`, `attention_1/output/dense/*`,
  `LayerNorm/*` (after attention), `ffn_1/intermediate/dense/*`,
  `ffn_1/intermediate/output/dense/*`, `LayerNorm_1/*` (after the
  feed-forward);
- `bert/pooler/dense/*`;
- heads (`run_pretraining.py`): `cls/predictions/transform/dense/*` (hidden
  -> embedding_size), `cls/predictions/transform/LayerNorm/*`,
  `cls/predictions/output_bias`, and the sentence-order head
  `cls/seq_relationship/{output_weights,output_bias}`, BERT's names.

Hugging Face names (`albert.encoder.albert_layer_groups.G.albert_layers.J.
attention.query.weight`, `...ffn`, `...ffn_output`, `...full_layer_layer_norm`,
`albert.pooler`, `predictions.*`, `sop_classifier.classifier.*`) translate to
those (the inverse of transformers' old `load_tf_weights_in_albert`).
"""

import re

from kzoo.checkpoints import bert_map
from kzoo.checkpoints.entries import (FamilyMap, block_entries, dense_entries, embedding_entries, strip_prefix,
                                      tf_style_name)
from kzoo.models.walk import encoder_parts

WORD_EMBEDDINGS = "bert/embeddings/word_embeddings"
SHARED_BLOCKS = "bert/encoder/transformer/group_"  # the names an ALBERT checkpoint is recognised by
ALBERT_BLOCK = {
    "query": "attention_1/self/query",
    "key": "attention_1/self/key",
    "value": "attention_1/self/value",
    "attention_output": "attention_1/output/dense",
    "attention_norm": "LayerNorm",
    "intermediate": "ffn_1/intermediate/dense",
    "output": "ffn_1/intermediate/output/dense",
    "output_norm": "LayerNorm_1",
}
# HF AlbertLayer sub-module -> official name in the inner group (and whether it is a LayerNorm).
_HF_BLOCK = {
    "attention.query": ("attention_1/self/query", False),
    "attention.key": ("attention_1/self/key", False),
    "attention.value": ("attention_1/self/value", False),
    "attention.dense": ("attention_1/output/dense", False),
    "attention.LayerNorm": ("LayerNorm", True),
    "ffn": ("ffn_1/intermediate/dense", False),
    "ffn_output": ("ffn_1/intermediate/output/dense", False),
    "full_layer_layer_norm": ("LayerNorm_1", True),
}
_HF_LAYER = re.compile(r"^encoder\.albert_layer_groups\.(\d+)\.albert_layers\.(\d+)\.(.+)\.(weight|bias)$")
_HF_HEADS = {
    "predictions.dense.weight": ("cls/predictions/transform/dense/kernel", True),
    "predictions.dense.bias": ("cls/predictions/transform/dense/bias", False),
    "predictions.LayerNorm.weight": ("cls/predictions/transform/LayerNorm/gamma", False),
    "predictions.LayerNorm.bias": ("cls/predictions/transform/LayerNorm/beta", False),
    "predictions.bias": ("cls/predictions/output_bias", False),
    "predictions.decoder.bias": ("cls/predictions/output_bias", False),  # the same tensor (second one unused)
    "sop_classifier.classifier.weight": ("cls/seq_relationship/output_weights", False),  # [2, hidden] both
    "sop_classifier.classifier.bias": ("cls/seq_relationship/output_bias", False),
}


def encoder_entries(encoder):
    """Lists (official name, variable) for every pretrained ALBERT encoder
    variable: each shared block once, under its group's name."""
    parts = encoder_parts(encoder)
    entries = embedding_entries("bert/embeddings/", parts.embeddings)
    if parts.projection is not None:
        entries += dense_entries("bert/encoder/embedding_hidden_mapping_in", parts.projection)
    for g, group in enumerate(parts.block_groups):
        for j, block in enumerate(group):
            entries += block_entries(f"{SHARED_BLOCKS}{g}/inner_group_{j}/", block, ALBERT_BLOCK)
    for pooler in parts.poolers:
        entries += dense_entries("bert/pooler/dense", pooler.dense)
    return entries


def official_name(hf_name):
    """(official name, transpose?) for a HF ALBERT weight name, or None."""
    if hf_name in _HF_HEADS:
        return _HF_HEADS[hf_name]
    name = strip_prefix(hf_name, "albert.")
    match = _HF_LAYER.match(name)
    if match:
        group, inner, module, leaf = match.groups()
        if module not in _HF_BLOCK:
            return None
        path, is_norm = _HF_BLOCK[module]
        path = f"{SHARED_BLOCKS}{group}/inner_group_{inner}/{path}"
        if is_norm:
            return f"{path}/{'gamma' if leaf == 'weight' else 'beta'}", False
        return (f"{path}/kernel", True) if leaf == "weight" else (f"{path}/bias", False)
    if name in ("pooler.weight", "pooler.bias"):  # a Linear named pooler (official: pooler/dense)
        return ("bert/pooler/dense/kernel", True) if name.endswith("weight") else ("bert/pooler/dense/bias", False)
    if name.startswith(("embeddings.", "encoder.embedding_hidden_mapping_in.")):
        return tf_style_name(name, "bert/")
    return None


MAP = FamilyMap("albert", WORD_EMBEDDINGS, True, encoder_entries, bert_map.head_entries, official_name)
