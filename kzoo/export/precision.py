"""Serving precision: the copy of a model that an export with `compute_dtype="bfloat16"` traces.

CPUs with AVX512-BF16 or AMX (and TPUs, recent GPUs) multiply bfloat16 matrices at twice the
float32 rate or more, and TensorFlow's oneDNN kernels use those units for bfloat16 `MatMul`,
`BatchMatMul` and `Einsum`. A bfloat16 serving copy does exactly the encoder's projections in
bfloat16 and everything else in float32:

- every `Dense` / `EinsumDense` inside a `TransformerEncoderBlock` (attention query, key, value
  and output projections, the feed-forward pair, adapters), the `BertPooler`'s dense layer and
  the embedding projection (ALBERT, ELECTRA-Small) keeps its kernel as a bfloat16 variable (half
  the bytes, and no per-request cast of the weights), casts its input to bfloat16 and multiplies
  in bfloat16 (float32 accumulation in oneDNN); its bias, its activation and its output are
  float32;
- embeddings, LayerNorm, the attention scores and softmax, residual sums, poolings and the task
  heads (logits) stay float32.

Keras' `mixed_bfloat16` policy would instead keep every activation in bfloat16 between layers
and, with float32 variables, cast every kernel on every call. The copy shares nothing with the
original model, which stays as it was.
"""

import keras

SERVING_DTYPES = ("float32", "bfloat16")


def check_serving_dtype(compute_dtype):
    if compute_dtype is not None and compute_dtype not in SERVING_DTYPES:
        raise ValueError(f"compute_dtype must be None (the model's own policy) or one of {list(SERVING_DTYPES)}, "
                         f"got {compute_dtype!r}")
    return compute_dtype


def _all_layers(model):
    return list(model._flatten_layers(include_self=True, recursive=True))


def _matmul_layers(model):
    """The Dense / EinsumDense layers whose matmuls run in bfloat16 (see the module docstring)."""
    from kzoo.layers import BertPooler, TransformerEncoderBlock
    from kzoo.models.walk import EMBEDDING_PROJECTION

    dense_types = (keras.layers.Dense, keras.layers.EinsumDense)
    found = {}
    for layer in _all_layers(model):
        if isinstance(layer, (TransformerEncoderBlock, BertPooler)):
            for sub in _all_layers(layer):
                if isinstance(sub, dense_types):
                    found[id(sub)] = sub
        elif isinstance(layer, dense_types) and layer.name == EMBEDDING_PROJECTION:
            found[id(layer)] = layer
    return list(found.values())


class _Float32Output:
    """A converted layer's activation: the bfloat16 matmul (+ float32 bias) result in float32, then
    the original activation, in float32."""

    def __init__(self, activation):
        self.activation = activation

    def __call__(self, x):
        x = keras.ops.cast(x, "float32")
        return x if self.activation is None else self.activation(x)


def _replace_kernel(layer, value):
    """`layer._kernel` becomes a new non-trainable variable holding `value` (its own shape and dtype)."""
    kernel = layer._kernel
    # Untracks the old variable as `del layer._kernel` does, without the `gc.collect()` Keras'
    # `Layer.__delattr__` runs after it (0.2-2 s each, with a test session's or a tool's heap).
    layer._untrack_variable(kernel)
    super(keras.layers.Layer, layer).__delattr__("_kernel")
    layer._tracker.unlock()
    layer._kernel = layer.add_weight(name="kernel", shape=tuple(value.shape), dtype=value.dtype, initializer="zeros",
                                     trainable=False)
    layer._tracker.lock()
    layer._kernel.assign(value)


def _to_bfloat16_matmul(layer):
    _replace_kernel(layer, keras.ops.cast(layer._kernel.value, "bfloat16"))
    layer.dtype_policy = "bfloat16"  # inputs cast to bfloat16; the float32 bias is not autocast
    activation = layer.activation
    if activation is keras.activations.linear:
        activation = None
    layer.activation = _Float32Output(activation)


def _clone(model):
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    if not clone.built:
        raise ValueError(f"cannot make a serving copy of {model.name!r}: it does not rebuild from its config")
    source, target = model.weights, clone.weights
    if [tuple(v.shape) for v in source] != [tuple(v.shape) for v in target]:
        raise ValueError(f"cannot make a serving copy of {model.name!r}: its copy has other weights")
    for original, copy in zip(source, target):
        copy.assign(original.value)
    return clone


def _real_token_blocks(model):
    from kzoo.layers import TransformerEncoderBlock

    return [layer for layer in _all_layers(model)
            if isinstance(layer, TransformerEncoderBlock) and layer._plain_attention()]


def _inference_activations(model):
    """The exact GELU of each feed-forward layer without its hand-written gradient, which an export
    never takes: grappler then fuses it into the matmul (MiniLM batch 32: +5% examples/s)."""
    from kzoo.layers import TransformerEncoderBlock, activations

    for layer in _all_layers(model):
        if isinstance(layer, TransformerEncoderBlock) and layer.intermediate_dense.activation is activations.gelu_exact:
            layer.intermediate_dense.activation = activations.gelu_exact_inference


def _heads_first_projections(blocks):
    """The real-token blocks' query, key and value kernels stored heads first: [width, heads, size] ->
    [heads, width, size], so that one batched matmul gives the [heads, tokens, size] layout the
    attention scores read, with no transpose of the projections (MiniLM, measured alone: 1.27 against
    1.50 ms for a batch of 32 SST-2 sentences, 0.43 against 0.46 ms for one). Only the copy's
    real-token path (`kzoo.layers.transformer._project_heads`) reads such a kernel: the layers keep
    float32 or bfloat16 kernels under their names, in the copy alone; a mixed policy's projections
    stay as they are."""
    from kzoo.layers.transformer import _serving_arithmetic

    for block in blocks:
        attention = block.attention
        for dense in (attention.query_dense, attention.key_dense, attention.value_dense):
            if _serving_arithmetic(dense):
                _replace_kernel(dense, keras.ops.transpose(dense._kernel.value, [1, 0, 2]))
                dense.heads_first = True


def serving_copy(model, compute_dtype=None, real_tokens_only=False):
    """The model an exporter traces for `compute_dtype`.

    Args:
        model: a built `keras.Model` (a kzoo task model, encoder or ensemble).
        compute_dtype: None: `model` itself, as it computes (float32, or its training policy);
            "float32": `model` when every layer computes in float32, else a float32 copy;
            "bfloat16": a copy whose encoder projections multiply in bfloat16, everything
            else in float32 (see the module docstring).
        real_tokens_only: for exports whose outputs read only real positions (classes, sentence
            embeddings, per-word tags): a copy whose encoder blocks run their projections and
            feed-forward layers on the real tokens alone
            (`TransformerEncoderBlock._call_on_real_tokens`; blocks with Shaw or DeBERTa relative
            attention, or LoRA on attention, run as they are). Outputs at real positions are
            unchanged; at padding positions the encoder then gives zeros.

    Returns:
        `model` or a new model with the same weights (bfloat16 kernels rounded to nearest even) whose
        exact GELUs leave out the hand-written gradient (`kzoo.layers.activations.gelu_exact_inference`)
        and, with `real_tokens_only`, whose attention query, key and value kernels are stored heads
        first (`_heads_first_projections`).
    """
    check_serving_dtype(compute_dtype)
    real_tokens_only = bool(real_tokens_only and _real_token_blocks(model))
    if compute_dtype == "float32" and all(layer.compute_dtype == "float32" for layer in _all_layers(model)):
        compute_dtype = None  # already float32
    if compute_dtype is None and not real_tokens_only:
        return model
    clone = _clone(model)
    _inference_activations(clone)
    blocks = _real_token_blocks(clone) if real_tokens_only else []
    for block in blocks:
        block.real_tokens_only = True
    if compute_dtype is None:
        _heads_first_projections(blocks)
        return clone
    converted = _matmul_layers(clone) if compute_dtype == "bfloat16" else []
    if compute_dtype == "bfloat16" and not converted:
        raise ValueError(f"{model.name!r} has no kzoo encoder projections to run in bfloat16")
    converted_ids = {id(layer) for layer in converted}
    for layer in _all_layers(clone):
        if id(layer) not in converted_ids and layer.dtype_policy.name != "float32":
            layer.dtype_policy = "float32"
    for layer in converted:
        _to_bfloat16_matmul(layer)
    _heads_first_projections(blocks)
    return clone
