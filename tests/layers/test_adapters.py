import keras
import numpy as np
import pytest

from kzoo.layers import BottleneckAdapter, LowRankAdapter, TransformerEncoderBlock
from kzoo.layers.trainability import freeze_parts, frozen_parts, set_trainable
from tests.layers.test_transformer import numpy_block

ALL_TARGETS = ("query", "key", "value", "attention_output", "intermediate", "output")


def _block(**kwargs):
    kwargs = {"num_heads": 4, "intermediate_size": 32, "dropout": 0.0, "attention_dropout": 0.0, **kwargs}
    block = TransformerEncoderBlock(name="block", **kwargs)
    block(np.zeros((1, 2, 16), "float32"))
    return block


def _copy_base(src, dst):
    """Copies every variable of `src` into the same-path variable of `dst`."""
    by_path = {v.path: v for v in dst.weights}
    for v in src.weights:
        by_path[v.path].assign(v)


def _randomise(layers, seed=0, scale=0.2):
    rng = np.random.default_rng(seed)
    for layer in layers:
        for v in layer.weights:
            v.assign(rng.normal(size=v.shape).astype("float32") * scale)


def _inputs(seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 6, 16)).astype("float32")
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2], "float32")
    return x, mask


def test_bottleneck_adapter_is_exactly_the_identity_at_init_and_serialises():
    adapter = BottleneckAdapter(size=4, activation="gelu_new", initializer_range=0.5)
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")
    np.testing.assert_array_equal(adapter(x), x)
    assert np.abs(np.asarray(adapter.down.kernel)).max() > 0  # near-identity: only `up` is zero
    assert not np.any(np.asarray(adapter.up.kernel)) and not np.any(np.asarray(adapter.up.bias))
    assert adapter.count_params() == 8 * 4 + 4 + 4 * 8 + 8  # h*m + m + m*h + h
    _randomise([adapter])
    want = x + np.asarray(keras.activations.gelu(x @ np.asarray(adapter.down.kernel) + np.asarray(adapter.down.bias),
                                                 approximate=True)) @ np.asarray(adapter.up.kernel)
    want = want + np.asarray(adapter.up.bias)
    np.testing.assert_allclose(adapter(x), want, atol=1e-5)
    config = adapter.get_config()
    assert BottleneckAdapter.from_config(config).get_config() == config
    assert keras.saving.get_registered_name(BottleneckAdapter) == "kzoo>BottleneckAdapter"


def test_low_rank_adapter_is_hu_et_al_update_on_the_2d_kernel():
    lora = LowRankAdapter(rank=3, output_dims=(16,), alpha=6, input_axes=2)
    ctx = np.random.default_rng(0).normal(size=(2, 5, 4, 4)).astype("float32")
    np.testing.assert_array_equal(lora(ctx), np.zeros((2, 5, 16), "float32"))  # B = 0
    a = np.asarray(lora.lora_a)
    assert a.shape == (16, 3) and tuple(lora.lora_b.shape) == (3, 16)
    assert 0 < np.abs(a).max() <= 1 / np.sqrt(16)  # kaiming-uniform(a=sqrt(5)) bound
    _randomise([lora])
    want = ctx.reshape(2, 5, 16) @ np.asarray(lora.lora_a) @ np.asarray(lora.lora_b) * 2.0  # alpha / r
    np.testing.assert_allclose(lora(ctx), want, atol=1e-5)
    np.testing.assert_allclose(np.asarray(lora.delta_kernel()).reshape(16, 16),
                               np.asarray(lora.lora_a) @ np.asarray(lora.lora_b) * 2.0, atol=1e-6)
    config = lora.get_config()
    assert LowRankAdapter.from_config(config).get_config() == config
    assert LowRankAdapter(rank=4, output_dims=(2,)).scale == 1.0


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("kind", [dict(adapter_type="houlsby", adapter_size=3), dict(adapter_type="pfeiffer"),
                                  dict(lora_rank=2, lora_targets=ALL_TARGETS)])
def test_block_is_exactly_unchanged_at_init(norm_first, kind):
    plain = _block(norm_first=norm_first)
    _randomise([plain], seed=3, scale=0.3)
    adapted = _block(norm_first=norm_first, **kind)
    _copy_base(plain, adapted)
    x, mask = _inputs()
    np.testing.assert_array_equal(adapted(x, padding_mask=mask), plain(x, padding_mask=mask))
    assert len(adapted.weights) > len(plain.weights)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("adapter_type", ["houlsby", "pfeiffer"])
def test_adapters_and_lora_match_the_numpy_reference(norm_first, adapter_type):
    block = _block(norm_first=norm_first, adapter_type=adapter_type, adapter_size=5, lora_rank=2, lora_alpha=3,
                   lora_targets=ALL_TARGETS)
    _randomise([block], seed=4, scale=0.3)
    x, mask = _inputs(5)
    out = np.asarray(block(x, padding_mask=mask))
    want = numpy_block(block, x.astype("float64"), mask.astype("float64"))
    real = mask.astype(bool)
    np.testing.assert_allclose(out[real], want[real], atol=1e-4)
    # each adapter and each LoRA update matters
    for layer in block.adapter_layers() + list(block.lora_layers().values()):
        saved = [np.asarray(v) for v in layer.weights]
        for v in layer.weights:
            v.assign(np.zeros(v.shape, "float32"))
        assert np.abs(np.asarray(block(x, padding_mask=mask)) - out)[real].max() > 1e-4, layer.name
        for v, value in zip(layer.weights, saved):
            v.assign(value)


def test_sub_layer_names_are_stable():
    block = _block(adapter_type="houlsby", adapter_size=3, lora_rank=2, lora_targets=("query", "intermediate"))
    paths = {v.path for v in block.weights}
    for name in ("attention_adapter/down/kernel", "attention_adapter/up/bias", "ffn_adapter/down/bias",
                 "ffn_adapter/up/kernel", "query_lora/lora_a", "query_lora/lora_b", "intermediate_lora/lora_a",
                 "attention/query/kernel", "intermediate/kernel"):
        assert f"block/{name}" in paths, name
    assert {a.name for a in _block(adapter_type="pfeiffer").adapter_layers()} == {"ffn_adapter"}


def test_trainable_parameter_counts_match_the_formulas():
    h, m, r, inner = 16, 3, 2, 32
    base = _block()
    base_params = base.count_params()
    houlsby = _block(adapter_type="houlsby", adapter_size=m)
    assert houlsby.count_params() - base_params == 2 * (h * m + m + m * h + h)
    pfeiffer = _block(adapter_type="pfeiffer", adapter_size=m)
    assert pfeiffer.count_params() - base_params == h * m + m + m * h + h

    sizes = {"query": (h, h), "key": (h, h), "value": (h, h), "attention_output": (h, h),
             "intermediate": (h, inner), "output": (inner, h)}
    lora = _block(lora_rank=r, lora_targets=ALL_TARGETS)
    lora_params = sum(r * (i + o) for i, o in sizes.values())
    frozen = 4 * (h * h + h) + (h * inner + inner) + (inner * h + h)  # every projection's kernel and bias
    layer_norms = 4 * h
    assert sum(int(np.prod(v.shape)) for v in lora.trainable_weights) == lora_params + layer_norms
    assert sum(int(np.prod(v.shape)) for v in lora.non_trainable_weights) == frozen
    default = _block(lora_rank=r)  # ("query", "value")
    assert default.count_params() - base_params == 2 * r * (h + h)


def test_lora_base_kernels_stay_frozen_whatever_trainable_is_set_to():
    block = _block(lora_rank=2, lora_targets=("query", "attention_output", "output"))
    bases = [v for t in ("query", "attention_output", "output") for v in block.projection(t).weights]
    assert len(bases) == 6 and not any(v.trainable for v in bases)
    for value in (True, False, True):
        block.trainable = value
        assert not any(v.trainable for v in bases)
    block.trainable = True
    trainable = {v.path for v in block.trainable_weights}
    assert "block/attention/key/kernel" in trainable and "block/query_lora/lora_b" in trainable
    assert not trainable & {v.path for v in bases}

    model = keras.Sequential([keras.Input((4, 16)), block])
    model.trainable = False
    model.trainable = True  # propagates down through the block's setter
    assert not any(v.trainable for v in bases)
    assert {v.path for v in model.trainable_weights} == trainable


@pytest.mark.parametrize("kwargs, message", [
    (dict(adapter_type="lora"), "unknown adapter_type 'lora'"),
    (dict(adapter_type="houlsby", adapter_size=0), "adapter_size must be a positive integer"),
    (dict(adapter_size=-4), "adapter_size must be a positive integer"),
    (dict(lora_rank=-1), "lora_rank must be a non-negative integer"),
    (dict(lora_rank=2, lora_alpha=0), "lora_alpha must be positive"),
    (dict(lora_rank=2, lora_targets=("query", "dense")), r"unknown lora_targets \['dense'\]"),
    (dict(lora_rank=2, lora_targets=()), "needs at least one of lora_targets"),
    (dict(adapter_activation="swiglu"), "unknown activation 'swiglu'"),
])
def test_invalid_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransformerEncoderBlock(num_heads=2, intermediate_size=8, **kwargs)


def test_layer_level_validation():
    with pytest.raises(ValueError, match="adapter size must be a positive integer"):
        BottleneckAdapter(size=0)
    with pytest.raises(ValueError, match="LoRA rank must be a positive integer"):
        LowRankAdapter(rank=0, output_dims=(4,))


def test_set_trainable_reaches_what_the_trainable_setter_skips():
    block = _block(adapter_type="houlsby", adapter_size=2, lora_rank=2)
    block.attention_adapter.down.kernel.trainable = False
    block.output_dense.trainable = False
    block.trainable = True  # Keras (TensorFlow backend) skips an assignment of the value the flag already has
    assert not block.attention_adapter.down.kernel.trainable and not block.output_dense.kernel.trainable
    set_trainable(block, True)
    frozen = {v.path.split("/", 1)[1] for v in block.weights if not v.trainable}
    assert frozen == {f"attention/{t}/{k}" for t in ("query", "value") for k in ("kernel", "bias")}  # LoRA bases
    set_trainable(block, False)
    assert not block.trainable_weights and not any(v.trainable for v in block.weights)


def test_frozen_parts_cover_exactly_the_frozen_variables():
    block = _block(adapter_type="houlsby", adapter_size=2)
    assert frozen_parts(block) == []
    block.attention.key_dense.kernel.trainable = False
    for v in block.ffn_adapter.weights + block.attention_layer_norm.weights:
        v.trainable = False
    parts = frozen_parts(block)
    assert parts == ["attention/key/kernel", "attention_layer_norm", "ffn_adapter"]
    assert frozen_parts(block, exempt=[block.attention.key_dense.kernel]) == parts[1:]
    fresh = _block(adapter_type="houlsby", adapter_size=2)
    freeze_parts(fresh, parts)
    assert [v.trainable for v in fresh.weights] == [v.trainable for v in block.weights]
    block.trainable = False
    assert frozen_parts(block) == []  # the layer's own flag says it all


def test_bottleneck_adapter_rebuilt_with_trainable_false_is_frozen():
    adapter = BottleneckAdapter.from_config({**BottleneckAdapter(size=2).get_config(), "trainable": False})
    adapter(np.ones((1, 2, 8), "float32"))
    assert not any(v.trainable for v in adapter.weights)
