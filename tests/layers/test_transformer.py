import math

import numpy as np
import pytest

from kzoo.layers import TransformerEncoderBlock


def _ln(x, gamma, beta, eps=1e-12):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


def _gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def numpy_block(block, x, mask):
    """Float64 forward pass of one block, written from the BERT equations.

    Covers the block's adapters (Houlsby / Pfeiffer placement) and LoRA
    updates too: a LoRA target's kernel is W + alpha / r * A @ B, with W
    viewed as the official 2-D [in, out] matrix.
    """
    w = lambda v: np.asarray(v, "float64")  # noqa: E731
    att = block.attention
    loras = block.lora_layers() if hasattr(block, "lora_layers") else {}

    def kernel(target, dense):
        k = w(dense.kernel)
        if target not in loras:
            return k
        lora = loras[target]
        delta = (w(lora.lora_a) @ w(lora.lora_b)) * lora.scale
        return k + delta.reshape(k.shape)

    def project(h, target):
        dense = getattr(att, f"{target}_dense")
        return np.einsum("bsh,hnd->bnsd", h, kernel(target, dense)) + w(dense.bias)[None, :, None]

    def adapter(layer, h):
        inner = _gelu(h @ w(layer.down.kernel) + w(layer.down.bias))
        return h + inner @ w(layer.up.kernel) + w(layer.up.bias)

    def attention(h):
        qq, kk, vv = project(h, "query"), project(h, "key"), project(h, "value")
        scores = np.einsum("bnqd,bnkd->bnqk", qq, kk) / math.sqrt(qq.shape[-1])
        scores = scores + (1.0 - mask[:, None, None, :]) * -1e9
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx = np.einsum("bnqk,bnkd->bnqd", probs, vv)
        out = np.einsum("bnqd,ndh->bqh", ctx, kernel("attention_output", att.output_dense)) + w(att.output_dense.bias)
        if getattr(block, "adapter_type", None) == "houlsby":
            out = adapter(block.attention_adapter, out)
        return out

    def ffn(h):
        inner = _gelu(h @ kernel("intermediate", block.intermediate_dense) + w(block.intermediate_dense.bias))
        out = inner @ kernel("output", block.output_dense) + w(block.output_dense.bias)
        if getattr(block, "adapter_type", None) is not None:
            out = adapter(block.ffn_adapter, out)
        return out

    ln1 = lambda h: _ln(h, w(block.attention_layer_norm.gamma), w(block.attention_layer_norm.beta))  # noqa: E731
    ln2 = lambda h: _ln(h, w(block.output_layer_norm.gamma), w(block.output_layer_norm.beta))  # noqa: E731
    if block.norm_first:
        x = x + attention(ln1(x))
        return x + ffn(ln2(x))
    x = ln1(x + attention(x))
    return ln2(x + ffn(x))


@pytest.mark.parametrize("norm_first", [False, True])
def test_matches_numpy_reference(norm_first):
    block = TransformerEncoderBlock(num_heads=4, intermediate_size=32, norm_first=norm_first, dropout=0.0,
                                    attention_dropout=0.0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 16)).astype("float32")
    mask = np.array([[1] * 6, [1] * 3 + [0] * 3], "float32")
    out = np.asarray(block(x, padding_mask=mask))
    want = numpy_block(block, x.astype("float64"), mask.astype("float64"))
    real = mask.astype(bool)
    np.testing.assert_allclose(out[real], want[real], atol=1e-5)


def test_post_and_pre_ln_differ():
    x = np.random.default_rng(2).normal(size=(1, 4, 16)).astype("float32")
    post = TransformerEncoderBlock(num_heads=2, intermediate_size=8)
    pre = TransformerEncoderBlock.from_config({**post.get_config(), "norm_first": True})
    post(x)
    pre(x)
    pre.set_weights(post.get_weights())
    assert np.abs(np.asarray(post(x)) - np.asarray(pre(x))).max() > 1e-2


def test_padding_does_not_change_real_positions():
    block = TransformerEncoderBlock(num_heads=2, intermediate_size=8)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 7, 16)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0, 0]], "float32")
    noisy = x.copy()
    noisy[:, 4:] = rng.normal(size=(1, 3, 16)) * 100  # whatever sits at the padding
    a = np.asarray(block(x, padding_mask=mask))[:, :4]
    b = np.asarray(block(noisy, padding_mask=mask))[:, :4]
    c = np.asarray(block(x[:, :4], padding_mask=mask[:, :4]))
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, c, atol=1e-6)


def test_serialisation_round_trip():
    block = TransformerEncoderBlock(num_heads=2, intermediate_size=8, activation="gelu_new", norm_first=True)
    assert TransformerEncoderBlock.from_config(block.get_config()).get_config() == block.get_config()
    adapted = TransformerEncoderBlock(num_heads=2, intermediate_size=8, adapter_type="pfeiffer", adapter_size=3,
                                      adapter_activation="relu", lora_rank=2, lora_alpha=8.0,
                                      lora_targets=("key", "output"))
    config = adapted.get_config()
    assert TransformerEncoderBlock.from_config(config).get_config() == config
    assert config["lora_targets"] == ["key", "output"] and config["adapter_type"] == "pfeiffer"


def test_defaults_add_no_adapter_or_lora():
    block = TransformerEncoderBlock(num_heads=2, intermediate_size=8)
    block(np.ones((1, 2, 16), "float32"))
    assert block.get_config()["adapter_type"] is None and block.get_config()["lora_rank"] == 0
    assert block.adapter_layers() == [] and block.lora_layers() == {}
    assert len(block.weights) == 16 and all(v.trainable for v in block.weights)


def test_width_must_divide_heads():
    with pytest.raises(ValueError, match="not divisible by num_heads 3"):
        TransformerEncoderBlock(num_heads=3, intermediate_size=8)(np.ones((1, 2, 16), "float32"))


def _trainable_names(layer):
    return [v.path.split("/", 1)[1] for v in layer.trainable_weights]


def test_frozen_sub_layers_are_in_the_config_and_frozen_again_when_rebuilt():
    x = np.ones((1, 3, 16), "float32")
    block = TransformerEncoderBlock(num_heads=2, intermediate_size=8, adapter_type="pfeiffer", adapter_size=2,
                                    lora_rank=2, lora_targets=("query", "key", "value", "attention_output"))
    block(x)
    assert block.get_config()["frozen_parts"] == []  # LoRA bases are frozen anyway: never listed
    for v in block.output_dense.weights + block.attention_layer_norm.weights + [block.intermediate_dense.bias]:
        v.trainable = False  # per-variable flags, as enable_parameter_efficient_training sets them
    config = block.get_config()
    assert config["frozen_parts"] == ["attention_layer_norm", "intermediate/bias", "output"]
    rebuilt = TransformerEncoderBlock.from_config(config)
    rebuilt(x)
    assert _trainable_names(rebuilt) == _trainable_names(block)
    assert rebuilt.get_config() == config
    old = {k: v for k, v in config.items() if k != "frozen_parts"}  # a config written before frozen_parts
    legacy = TransformerEncoderBlock.from_config(old)
    legacy(x)
    assert len(legacy.trainable_weights) == len(block.trainable_weights) + 2 + 1 + 2
    with pytest.raises(ValueError, match="frozen part 'ffn' names no single sub-layer or variable"):
        TransformerEncoderBlock.from_config({**config, "frozen_parts": ["ffn"]})(x)


def test_a_block_rebuilt_with_trainable_false_freezes_the_sub_layers_it_builds():
    block = TransformerEncoderBlock.from_config({**TransformerEncoderBlock(num_heads=2, intermediate_size=8,
                                                                          adapter_type="houlsby", adapter_size=2,
                                                                          lora_rank=2).get_config(),
                                                 "trainable": False})
    block(np.ones((1, 3, 16), "float32"))
    assert not block.trainable and not any(v.trainable for v in block.weights)
    block.trainable = True  # a real change: Keras propagates it, the LoRA bases stay frozen
    frozen = {v.path.split("/", 1)[1] for v in block.weights if not v.trainable}
    assert frozen == {f"attention/{t}/{k}" for t in ("query", "value") for k in ("kernel", "bias")}


def _padded_batch(width=16):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 6, width)).astype("float32")
    lengths = np.array([6, 1, 3, 0])  # a full row, one token, three, and a row of padding only
    mask = (np.arange(6)[None] < lengths[:, None]).astype("int32")
    return x, mask


@pytest.mark.parametrize("options", [
    {},
    {"norm_first": True},
    {"adapter_type": "houlsby", "adapter_size": 4},
    {"adapter_type": "pfeiffer", "adapter_size": 4, "norm_first": True},
    {"lora_rank": 2, "lora_targets": ("intermediate", "output")},
], ids=["post_ln", "pre_ln", "houlsby", "pfeiffer_pre_ln", "lora_ffn"])
def test_real_tokens_only_serves_what_call_gives_at_real_positions(options):
    """The serving path (`real_tokens_only`, set on export copies) against the numpy reference and the plain
    call, under a traced function with dynamic shapes: equal at real positions, zeros at padding (which only
    this path gives: the check that it ran), a batch without padding, an empty batch."""
    import tensorflow as tf

    block = TransformerEncoderBlock(num_heads=4, intermediate_size=32, **options)
    x, mask = _padded_batch()
    block(x, padding_mask=mask)  # builds
    rng = np.random.default_rng(8)
    for layer in block.lora_layers().values():  # LoRA's B starts at zero: give the update a value
        layer.lora_b.assign(rng.normal(size=layer.lora_b.shape).astype("float32") * 0.1)
    plain = np.asarray(block(x, padding_mask=mask))
    block.real_tokens_only = True
    serve = tf.function(lambda h, m: block(h, padding_mask=m, training=False),
                        input_signature=[tf.TensorSpec([None, None, 16]), tf.TensorSpec([None, None], tf.int32)])
    served = serve(x, mask).numpy()
    real = mask.astype(bool)
    np.testing.assert_allclose(served[real], plain[real], atol=1e-5)
    np.testing.assert_allclose(served[real], numpy_block(block, x.astype("float64"), mask)[real], atol=1e-5)
    assert not served[~real].any() and plain[~real].any()
    np.testing.assert_allclose(serve(x[:1], mask[:1]).numpy(), plain[:1], atol=1e-5)  # a batch without padding
    unpadded = np.concatenate([x[:1], x[:1] * 0.5])
    full = np.ones((2, 6), "int32")
    np.testing.assert_allclose(serve(unpadded, full).numpy(), numpy_block(block, unpadded.astype("float64"), full),
                               atol=1e-5)
    assert serve(x[:0], mask[:0]).shape == (0, 6, 16)
    assert not TransformerEncoderBlock(num_heads=2, intermediate_size=8).real_tokens_only  # off unless set


def test_real_token_blocks_of_one_graph_share_where_the_tokens_are():
    """Three served blocks in one traced function: the real positions are found once (one `Where`), the first
    block gathers the real rows of its input, and the others take the rows the block before computed (no
    gather of a block's padded output), with the same outputs as three plain calls."""
    import tensorflow as tf

    blocks = [TransformerEncoderBlock(num_heads=4, intermediate_size=32, name=f"b{i}") for i in range(3)]
    x, mask = _padded_batch()
    plain = x
    for block in blocks:
        plain = np.asarray(block(plain, padding_mask=mask))
        block.real_tokens_only = True

    def stack(h, m):
        for block in blocks:
            h = block(h, padding_mask=m, training=False)
        return h

    serve = tf.function(stack).get_concrete_function(tf.TensorSpec([None, None, 16]),
                                                     tf.TensorSpec([None, None], tf.int32))
    real = mask.astype(bool)
    np.testing.assert_allclose(serve(x, mask).numpy()[real], plain[real], atol=1e-5)
    ops = serve.graph.get_operations()
    assert [op.type for op in ops].count("Where") == 1
    (layout,) = serve.graph._kzoo_real_token_layouts.values()
    row_gathers = [op for op in ops if op.type == "GatherV2" and op.inputs[1] is layout.positions
                   and op.inputs[0].shape.rank == 2]  # [batch * length, width] rows -> [tokens, width]
    assert len(row_gathers) == 1


def test_real_tokens_only_leaves_relative_attention_and_attention_lora_as_they_are():
    import tensorflow as tf

    x, mask = _padded_batch()
    for options in ({"max_relative_position": 3}, {"lora_rank": 2, "lora_targets": ("query", "value")}):
        block = TransformerEncoderBlock(num_heads=4, intermediate_size=32, **options)
        plain = np.asarray(block(x, padding_mask=mask))
        block.real_tokens_only = True
        assert not block._plain_attention()
        served = tf.function(lambda h, m: block(h, padding_mask=m, training=False))(x, mask).numpy()
        np.testing.assert_allclose(served, plain, atol=1e-6)  # padding positions too: the plain call ran


def test_real_tokens_only_under_a_mixed_policy_calls_the_projection_layers():
    """A model trained under mixed_bfloat16 and exported as it computes: the projections go through the layers
    themselves (bfloat16 compute, float32 kernels), so the served block gives what `call` gives."""
    import keras
    import tensorflow as tf

    block = TransformerEncoderBlock(num_heads=4, intermediate_size=32, dtype="mixed_bfloat16")
    x, mask = _padded_batch()
    plain = np.asarray(keras.ops.cast(block(x, padding_mask=mask), "float32"))
    block.real_tokens_only = True
    served = tf.cast(tf.function(lambda h, m: block(h, padding_mask=m, training=False))(x, mask), tf.float32).numpy()
    real = mask.astype(bool)
    np.testing.assert_allclose(served[real], plain[real], atol=0.02)
    assert not served[~real].any()
