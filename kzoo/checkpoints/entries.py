"""The pieces every family's assignment map is made of.

An assignment map is a list of `Entry`s: one checkpoint name (in the family's
*canonical* names: the official TF1 names where the family has official
checkpoints, i.e. BERT, ALBERT and ELECTRA; for the Hugging Face-only
families, RoBERTa, XLM-R, DistilBERT and DeBERTa-v2/v3, the TensorFlow
spelling of their HF names, `roberta/encoder/layer_0/attention/self/query/
kernel`) and the model
variable it fills, with the layout the checkpoint stores it in. A
`FamilyMap` gathers a family's entries and its translation from HF names
(torch `Linear` weights [out, in] are transposed to TensorFlow's [in, out]
on the way; the layouts then apply as for official checkpoints).
"""

import dataclasses
import re
from typing import Callable

import numpy as np


@dataclasses.dataclass
class Entry:
    """One checkpoint name and the model variable it fills.

    `layout` says how the checkpoint stores the value: "plain" (as the
    variable), "split_out" ([in, heads*size] for a [in, heads, size] kernel or
    [heads*size] for a [heads, size] bias), "split_in" ([heads*size, out] for
    a [heads, size, out] kernel) or "transpose" ([out, in] for an [in, out]
    kernel: `cls/seq_relationship/output_weights`).

    `optional`: a variable a checkpoint of the family may lack without a
    strict load failing: it is then new, as a task head is (DistilBERT's
    `pre_classifier`, only in its sequence-classification checkpoints).
    """

    name: str
    variable: object
    layout: str = "plain"
    optional: bool = False

    @property
    def stored_shape(self):
        shape = tuple(self.variable.shape)
        if self.layout == "split_out":
            return shape[:-2] + (shape[-2] * shape[-1],)
        if self.layout == "split_in":
            return (shape[0] * shape[1],) + shape[2:]
        if self.layout == "transpose":
            return shape[::-1]
        return shape

    def to_official(self, value):
        """The variable's value (numpy) in the checkpoint's layout."""
        value = np.asarray(value)
        return value.T if self.layout == "transpose" else value.reshape(self.stored_shape)


def checked_value(entry, value, source):
    """Checks a stored checkpoint-layout array and reshapes it to the variable.

    A shape other than the stored one raises a ValueError naming the source,
    the checkpoint name, the model variable and both shapes.
    """
    value = np.asarray(value)
    if value.shape != entry.stored_shape:
        raise ValueError(
            f"{source}: shape mismatch for {entry.name}: checkpoint has {list(value.shape)}, "
            f"model variable {entry.variable.path} needs {list(entry.stored_shape)}"
        )
    if entry.layout == "transpose":
        value = value.T
    return value.reshape(tuple(entry.variable.shape)).astype(entry.variable.dtype)


@dataclasses.dataclass(frozen=True)
class FamilyMap:
    """A family's assignment map.

    Attributes:
        family: the family (`kzoo.configs.FAMILIES`; "roberta" serves XLM-R).
        word_embeddings: canonical name of the word table (the name a
            checkpoint of the family is recognised by).
        official: whether the canonical names are an official TF1
            checkpoint's (BERT, ALBERT, ELECTRA).
        encoder_entries: `f(encoder) -> [Entry]`, every pretrained variable
            of a kzoo encoder of the family.
        head_entries: `f(model, encoder) -> [Entry]`, the pretraining or task
            heads of `model` the family's checkpoints hold.
        hf_name: `f(hf_name) -> (canonical name, transpose) | None` for a HF
            weight name (None: not a name of the map, reported unused).
    """

    family: str
    word_embeddings: str
    official: bool
    encoder_entries: Callable
    head_entries: Callable
    hf_name: Callable


# The eight weights of a post-LN block, by kzoo role -> sub-layer name in BERT's official checkpoints.
BERT_BLOCK = {
    "query": "attention/self/query",
    "key": "attention/self/key",
    "value": "attention/self/value",
    "attention_output": "attention/output/dense",
    "attention_norm": "attention/output/LayerNorm",
    "intermediate": "intermediate/dense",
    "output": "output/dense",
    "output_norm": "output/LayerNorm",
}


# Shaw et al.'s relative-position embeddings of a block whose attention has them
# (`kzoo.layers.RelativeMultiHeadAttention`): kzoo's names, beside the query/key/value
# projections of `attention/self`, spelled as tensor2tensor's variable scopes
# (`relative_positions_keys/embeddings`, `relative_positions_values/embeddings`), each
# [2k+1, head_size] and stored as the variable is.
RELATIVE_BLOCK = {
    "relative_keys": "attention/self/relative_positions_keys/embeddings",
    "relative_values": "attention/self/relative_positions_values/embeddings",
}


def dense_entries(name, dense, kernel_layout="plain", bias_layout="plain", optional=False):
    return [Entry(f"{name}/kernel", dense.kernel, kernel_layout, optional),
            Entry(f"{name}/bias", dense.bias, bias_layout, optional)]


def norm_entries(name, norm, optional=False):
    return [Entry(f"{name}/gamma", norm.gamma, optional=optional), Entry(f"{name}/beta", norm.beta, optional=optional)]


def block_entries(prefix, block, names=BERT_BLOCK, relative_names=RELATIVE_BLOCK):
    """The entries of one `TransformerEncoderBlock` under `prefix`
    ("bert/encoder/layer_3/"), its sub-layers named by `names` (role -> name,
    as `BERT_BLOCK`); a block with relative-position attention adds its
    relative key (and value) embeddings under `relative_names` (as
    `RELATIVE_BLOCK`)."""
    attention = block.attention
    entries = []
    relative_keys = getattr(attention, "relative_key_embeddings", None)
    if relative_keys is not None:
        entries.append(Entry(prefix + relative_names["relative_keys"], relative_keys))
    relative_values = getattr(attention, "relative_value_embeddings", None)
    if relative_values is not None:
        entries.append(Entry(prefix + relative_names["relative_values"], relative_values))
    for role, dense in (("query", attention.query_dense), ("key", attention.key_dense),
                        ("value", attention.value_dense)):
        entries += dense_entries(prefix + names[role], dense, "split_out", "split_out")
    entries += dense_entries(prefix + names["attention_output"], attention.output_dense, "split_in")
    entries += dense_entries(prefix + names["intermediate"], block.intermediate_dense)
    entries += dense_entries(prefix + names["output"], block.output_dense)
    entries += norm_entries(prefix + names["attention_norm"], block.attention_layer_norm)
    return entries + norm_entries(prefix + names["output_norm"], block.output_layer_norm)


def embedding_entries(prefix, embeddings):
    """Word, token-type (when the layer has a table), LayerNorm and learned
    position entries under `prefix` ("bert/embeddings/")."""
    entries = [Entry(f"{prefix}word_embeddings", embeddings.word_embeddings.embeddings)]
    if embeddings.token_type_embeddings is not None:
        entries.append(Entry(f"{prefix}token_type_embeddings", embeddings.token_type_embeddings.embeddings))
    entries += norm_entries(f"{prefix}LayerNorm", embeddings.layer_norm)
    if embeddings.position_embedding == "learned":
        (table,) = embeddings.position_embeddings.weights
        entries.append(Entry(f"{prefix}position_embeddings", table))
    return entries


_INDEX = re.compile(r"\.(\d+)(?=\.|$)")


def tf_style_name(hf_name, scope=""):
    """The TensorFlow spelling of a HF weight name, `(name, transpose)`, or None.

    `encoder.layer.3.attention.self.query.weight` -> (`<scope>encoder/layer_3/
    attention/self/query/kernel`, True): numbered modules become `name_N`,
    LayerNorm weights `gamma`/`beta`, `*_embeddings.weight` the table itself,
    and `Linear` weights transposed kernels.
    """
    module, _, leaf = hf_name.rpartition(".")
    if not module:
        return None
    path = scope + _INDEX.sub(r"_\1", module).replace(".", "/")
    last = module.rsplit(".", 1)[-1]
    if last.lower().endswith(("layernorm", "layer_norm")):
        leaf = {"weight": "gamma", "bias": "beta"}.get(leaf)
        return (f"{path}/{leaf}", False) if leaf else None
    if last.endswith("_embeddings"):
        return (path, False) if leaf == "weight" else None
    if leaf == "weight":
        return f"{path}/kernel", True
    if leaf == "bias":
        return f"{path}/bias", False
    return None


def strip_prefix(hf_name, prefix):
    """`hf_name` without its base-model prefix (`albert.`), as the base
    model (`AlbertModel`) saves its weights."""
    return hf_name[len(prefix):] if hf_name.startswith(prefix) else hf_name


def single(model, kind, what):
    """The layers of type `kind` in `model` (nested ones too); at most one."""
    layers = [l for l in [model] + list(model._flatten_layers(include_self=False, recursive=True))
              if isinstance(l, kind)]
    if len(layers) > 1:
        raise ValueError(f"model {model.name!r} has {len(layers)} {what}; the checkpoint names fit at most one")
    for layer in layers:
        if not layer.built:
            raise ValueError(f"{what[:-1] if what.endswith('s') else what} {layer.name!r} is not built yet")
    return layers
