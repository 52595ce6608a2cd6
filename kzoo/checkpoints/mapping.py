"""The assignment map from official BERT checkpoint names to kzoo variables.

One declarative table, written in google-research/bert's names
(`bert/encoder/layer_3/attention/self/query/kernel`). Each entry says which
model variable receives the value and how the stored array is reshaped:
official dense kernels are [in, out]; Keras' attention kernels split the
hidden axis into [heads, head_size]. Loaders for other formats (Hugging Face)
translate their names and layouts to the official ones and reuse the table.
"""

import dataclasses

import numpy as np

from kzoo.layers import BertEmbeddings, BertPooler, MaskedLMHead, NextSentenceHead, TransformerEncoderBlock


@dataclasses.dataclass
class Entry:
    """One checkpoint name and the model variable it fills.

    `layout` says how official BERT stores the value: "plain" (as the
    variable), "split_out" ([in, heads*size] for a [in, heads, size] kernel or
    [heads*size] for a [heads, size] bias), "split_in" ([heads*size, out] for
    a [heads, size, out] kernel) or "transpose" ([out, in] for an [in, out]
    kernel: `cls/seq_relationship/output_weights`).
    """

    name: str
    variable: object
    layout: str = "plain"

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


def encoder_entries(encoder):
    """Lists (official name, variable) for every pretrained encoder variable."""
    layers = encoder.layers
    (embeddings,) = [l for l in layers if isinstance(l, BertEmbeddings)]
    blocks = [l for l in layers if isinstance(l, TransformerEncoderBlock)]
    poolers = [l for l in layers if isinstance(l, BertPooler)]

    entries = [
        Entry("bert/embeddings/word_embeddings", embeddings.word_embeddings.embeddings),
        Entry("bert/embeddings/token_type_embeddings", embeddings.token_type_embeddings.embeddings),
        Entry("bert/embeddings/LayerNorm/gamma", embeddings.layer_norm.gamma),
        Entry("bert/embeddings/LayerNorm/beta", embeddings.layer_norm.beta),
    ]
    if embeddings.position_embedding == "learned":
        (table,) = embeddings.position_embeddings.weights
        entries.append(Entry("bert/embeddings/position_embeddings", table))

    for i, block in enumerate(blocks):
        prefix = f"bert/encoder/layer_{i}"
        attention = block.attention
        sublayers = {
            "attention/self/query": attention.query_dense,
            "attention/self/key": attention.key_dense,
            "attention/self/value": attention.value_dense,
            "attention/output/dense": attention.output_dense,
            "intermediate/dense": block.intermediate_dense,
            "output/dense": block.output_dense,
        }
        for name, dense in sublayers.items():
            kernel_layout, bias_layout = "plain", "plain"
            if name.startswith("attention/self"):
                kernel_layout, bias_layout = "split_out", "split_out"
            elif name == "attention/output/dense":
                kernel_layout = "split_in"
            entries.append(Entry(f"{prefix}/{name}/kernel", dense.kernel, kernel_layout))
            entries.append(Entry(f"{prefix}/{name}/bias", dense.bias, bias_layout))
        for name, norm in (
            ("attention/output/LayerNorm", block.attention_layer_norm),
            ("output/LayerNorm", block.output_layer_norm),
        ):
            entries.append(Entry(f"{prefix}/{name}/gamma", norm.gamma))
            entries.append(Entry(f"{prefix}/{name}/beta", norm.beta))
    for pooler in poolers:
        entries.append(Entry("bert/pooler/dense/kernel", pooler.dense.kernel))
        entries.append(Entry("bert/pooler/dense/bias", pooler.dense.bias))
    return entries


def head_entries(model):
    """Lists (official name, variable) for the pretraining heads in `model`:
    the masked-LM head (`cls/predictions/*`) and the next-sentence head
    (`cls/seq_relationship/*`), when it has them (at most one of each)."""
    layers = [model] + list(model._flatten_layers(include_self=False, recursive=True))
    mlm = [l for l in layers if isinstance(l, MaskedLMHead)]
    nsp = [l for l in layers if isinstance(l, NextSentenceHead)]
    if len(mlm) > 1 or len(nsp) > 1:
        raise ValueError(f"model {model.name!r} has {len(mlm)} masked-LM and {len(nsp)} next-sentence heads; "
                         "the official checkpoint names fit at most one of each")
    entries = []
    for head in mlm:
        if not head.built:
            raise ValueError(f"masked-LM head {head.name!r} is not built yet")
        entries += [
            Entry("cls/predictions/transform/dense/kernel", head.transform.kernel),
            Entry("cls/predictions/transform/dense/bias", head.transform.bias),
            Entry("cls/predictions/transform/LayerNorm/gamma", head.transform_layer_norm.gamma),
            Entry("cls/predictions/transform/LayerNorm/beta", head.transform_layer_norm.beta),
            Entry("cls/predictions/output_bias", head.output_bias),
        ]
    for head in nsp:
        if not head.built:
            raise ValueError(f"next-sentence head {head.name!r} is not built yet")
        entries += [
            Entry("cls/seq_relationship/output_weights", head.dense.kernel, "transpose"),
            Entry("cls/seq_relationship/output_bias", head.dense.bias),
        ]
    return entries


def checked_value(entry, value, source):
    """Checks a stored official-layout array and reshapes it to the variable.

    A shape other than the official one raises a ValueError naming the source,
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
