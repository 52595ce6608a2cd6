"""Helpers that walk a model to the kzoo pieces inside it."""

import collections
import re

import keras

from kzoo.layers import BertEmbeddings, BertPooler, TransformerEncoderBlock

# The names `kzoo.models.bert_encoder` gives its layers.
EMBEDDING_PROJECTION = "embedding_projection"
_LAYER_NAME = re.compile(r"^transformer_layer_(\d+)$")
_SHARED_NAME = re.compile(r"^transformer_group_(\d+)_inner_(\d+)$")

EncoderParts = collections.namedtuple("EncoderParts", ["embeddings", "projection", "block_groups", "poolers"])
EncoderParts.__doc__ = """The kzoo layers of an encoder (see `encoder_parts`).

Attributes:
    embeddings: the `BertEmbeddings` layer.
    projection: the dense layer from the embedding width to the hidden size
        (ALBERT, ELECTRA-Small), or None.
    block_groups: the distinct `TransformerEncoderBlock`s, bottom to top, in
        groups: one block per group (`transformer_layer_{i}`) for every family
        but ALBERT, whose group g holds the blocks
        `transformer_group_{g}_inner_{j}` (shared: used at several depths).
    poolers: the `BertPooler` (one, or none in a hand-made encoder).
"""


def find_encoder(model):
    """Returns the (sub-)model that directly holds a kzoo BertEmbeddings layer."""
    found = []
    for layer in [model] + list(model._flatten_layers(include_self=False, recursive=True)):
        if isinstance(layer, keras.Model) and any(isinstance(l, BertEmbeddings) for l in layer.layers):
            found.append(layer)
    if not found:
        raise ValueError(f"model {model.name!r} contains no kzoo BERT encoder (no BertEmbeddings layer)")
    if len(found) > 1:
        names = [m.name for m in found]
        raise ValueError(f"model {model.name!r} contains {len(found)} BERT encoders {names}; pass encoder=")
    return found[0]


def encoder_parts(encoder):
    """The embeddings, projection, block groups and pooler of a kzoo encoder
    (`EncoderParts`); `encoder` may also be a model holding one."""
    if not any(isinstance(l, BertEmbeddings) for l in encoder.layers):
        encoder = find_encoder(encoder)
    (embeddings,) = [l for l in encoder.layers if isinstance(l, BertEmbeddings)]
    projections = [l for l in encoder.layers if l.name == EMBEDDING_PROJECTION]
    blocks = [l for l in encoder.layers if isinstance(l, TransformerEncoderBlock)]
    poolers = [l for l in encoder.layers if isinstance(l, BertPooler)]
    shared = [_SHARED_NAME.match(b.name) for b in blocks]
    if blocks and all(shared):
        groups = collections.defaultdict(list)
        for block, match in sorted(zip(blocks, shared), key=lambda p: (int(p[1].group(1)), int(p[1].group(2)))):
            groups[int(match.group(1))].append(block)
        block_groups = [groups[g] for g in sorted(groups)]
    else:
        numbered = [_LAYER_NAME.match(b.name) for b in blocks]
        if all(numbered):
            blocks = [b for _, b in sorted(zip([int(m.group(1)) for m in numbered], blocks), key=lambda p: p[0])]
        block_groups = [[b] for b in blocks]
    return EncoderParts(embeddings, projections[0] if projections else None, block_groups, poolers)


def encoder_family(encoder):
    """The checkpoint-name family of a kzoo encoder, read off its structure:
    "albert" (shared `transformer_group_*` blocks), "roberta" (RoBERTa's
    position ids; XLM-R's encoders too, they have the same names),
    "deberta_v2" (the shared relative-position table of disentangled
    attention in the embeddings), "distilbert" (no segment table), "electra"
    (a pooler without weights, or an embedding projection without shared
    blocks) or "bert"."""
    parts = encoder_parts(encoder)
    if any(_SHARED_NAME.match(b.name) for group in parts.block_groups for b in group):
        return "albert"
    if getattr(parts.embeddings, "relative_embeddings", None) is not None:
        return "deberta_v2"
    if parts.embeddings.padding_idx is not None:
        return "roberta"
    if parts.embeddings.token_type_embeddings is None:
        return "distilbert"
    if parts.projection is not None or any(not p.use_dense for p in parts.poolers):
        return "electra"
    return "bert"
