import numpy as np
import pytest

from kzoo.training import WarmupLinearDecay, create_optimizer


def test_schedule_matches_formula():
    schedule = WarmupLinearDecay(2e-5, total_steps=1000, warmup_steps=100)
    for step in (0, 1, 50, 99, 100, 101, 550, 999, 1000, 1200):
        want = 2e-5 * (step / 100 if step < 100 else max(0.0, (1000 - step) / 900))
        assert float(schedule(step)) == pytest.approx(want, rel=1e-5, abs=1e-12)
    assert WarmupLinearDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError):
        WarmupLinearDecay(1e-3, total_steps=10, warmup_steps=20)


def test_weight_decay_spares_bias_and_layer_norm():
    import keras

    optimizer = create_optimizer(1e-3, num_train_steps=10, warmup_steps=0, weight_decay=0.5)
    dense, norm = keras.layers.Dense(2), keras.layers.LayerNormalization()
    dense.build((None, 2))
    norm.build((None, 2))
    variables = dense.weights + norm.weights
    for v in variables:
        v.assign(np.ones(v.shape, "float32"))  # zeros would hide decay
    before = [np.asarray(v).copy() for v in variables]
    optimizer.apply_gradients([(np.zeros(v.shape, "float32"), v) for v in variables])
    changed = {v.name: not np.allclose(b, np.asarray(v)) for v, b in zip(variables, before)}
    # A zero gradient moves only the decayed kernel (AdamW's decoupled decay).
    assert changed == {"kernel": True, "bias": False, "gamma": False, "beta": False}


# --- schedules -------------------------------------------------------------

import math

from kzoo.training.optimization import (
    SCHEDULES,
    SlantedTriangular,
    WarmupConstant,
    WarmupCosineDecay,
    create_schedule,
)


def slanted_triangular_reference(t, peak, total, cut_frac, ratio):
    """ULMFiT eq. 3, transcribed (p clipped at 0 past T)."""
    cut = math.floor(total * cut_frac + 1e-9)
    p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    p = max(p, 0.0)
    return peak * (1 + p * (ratio - 1)) / ratio


def cosine_reference(t, peak, total, warmup, min_fraction):
    if t < warmup:
        return peak * t / warmup
    q = 1.0 if t >= total else (t - warmup) / (total - warmup)
    return peak * (min_fraction + (1 - min_fraction) * 0.5 * (1 + math.cos(math.pi * q)))


@pytest.mark.parametrize("total,cut_frac,ratio", [(1000, 0.1, 32), (37, 0.3, 10), (10, 0.25, 1)])
def test_slanted_triangular_matches_ulmfit(total, cut_frac, ratio):
    schedule = SlantedTriangular(3e-4, total, cut_fraction=cut_frac, ratio=ratio)
    steps = sorted(set(list(range(0, total + 5, max(1, total // 97))) + [0, 1, total - 1, total, total + 3]))
    got = np.array([float(schedule(t)) for t in steps])
    want = np.array([slanted_triangular_reference(t, 3e-4, total, cut_frac, ratio) for t in steps])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)
    cut = math.floor(total * cut_frac)
    assert float(schedule(cut)) == pytest.approx(3e-4, rel=1e-6)
    assert float(schedule(0)) == pytest.approx(3e-4 / ratio, rel=1e-6)
    assert SlantedTriangular.from_config(schedule.get_config()).get_config() == schedule.get_config()


def test_slanted_triangular_rejects_bad_arguments():
    for kwargs in ({"cut_fraction": 0.0}, {"cut_fraction": 1.0}, {"ratio": 0.5}):
        with pytest.raises(ValueError):
            SlantedTriangular(1e-3, 100, **kwargs)
    with pytest.raises(ValueError, match="< 1"):
        SlantedTriangular(1e-3, 5, cut_fraction=0.1)  # floor(0.5) = 0 warm-up steps


@pytest.mark.parametrize("warmup,min_fraction", [(0, 0.0), (100, 0.0), (100, 0.1), (1000, 0.0)])
def test_warmup_cosine_matches_formula(warmup, min_fraction):
    schedule = WarmupCosineDecay(2e-5, total_steps=1000, warmup_steps=warmup, min_fraction=min_fraction)
    steps = list(range(0, 1100, 7)) + [warmup, max(warmup - 1, 0), 1000]
    got = np.array([float(schedule(t)) for t in steps])
    want = np.array([cosine_reference(t, 2e-5, 1000, warmup, min_fraction) for t in steps])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)
    assert float(schedule(1000)) == pytest.approx(2e-5 * min_fraction, abs=1e-12)
    assert WarmupCosineDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError):
        WarmupCosineDecay(1e-3, total_steps=10, warmup_steps=0, min_fraction=2.0)


def test_create_schedule_by_name():
    assert SCHEDULES == ("linear", "slanted_triangular", "cosine", "constant")
    linear = create_schedule("linear", 1e-3, 100, 10)
    assert isinstance(linear, WarmupLinearDecay) and linear.get_config()["warmup_steps"] == 10
    stlr = create_schedule("slanted_triangular", 1e-3, 1000, 70)
    assert isinstance(stlr, SlantedTriangular) and stlr.cut == 70 and stlr.cut_fraction == 0.07
    assert create_schedule("slanted_triangular", 1e-3, 1000, 0).cut_fraction == 0.1
    cosine = create_schedule("cosine", 1e-3, 100, 10)
    assert isinstance(cosine, WarmupCosineDecay) and cosine.get_config()["min_fraction"] == 0.0
    assert type(create_schedule("constant", 1e-3, 100, 0)).__name__ == "WarmupConstant"
    with pytest.raises(ValueError, match="linear, slanted_triangular, cosine, constant"):
        create_schedule("exponential", 1e-3, 100, 10)


def test_schedules_serialise_by_registered_name():
    import keras

    for schedule in (
        WarmupLinearDecay(1e-3, 100, 10),
        SlantedTriangular(1e-3, 100, 0.2, 16),
        WarmupCosineDecay(1e-3, 100, 10, 0.05),
        WarmupConstant(1e-3, 100, 10),
    ):
        config = keras.saving.serialize_keras_object(schedule)
        assert config["registered_name"] == f"kzoo>{type(schedule).__name__}"
        restored = keras.saving.deserialize_keras_object(config)
        assert type(restored) is type(schedule)
        assert [float(restored(t)) for t in (0, 17, 60)] == [float(schedule(t)) for t in (0, 17, 60)]


def test_create_optimizer_is_backward_compatible():
    import keras

    from kzoo.training.optimization import AdamW

    optimizer = create_optimizer(1e-3, 100, 10)  # positional, as existing callers
    # kzoo's AdamW (the fused update) in every case; still a keras AdamW.
    assert type(optimizer) is AdamW and isinstance(optimizer, keras.optimizers.AdamW)
    assert dict(optimizer.lr_multipliers) == {} and optimizer._weight_decay_exclude_names == ("bias", "gamma", "beta")
    assert optimizer.global_clipnorm == 1.0 and not optimizer._use_weight_decay(keras.Variable(1.0, name="bias"))
    assert isinstance(optimizer._learning_rate, WarmupLinearDecay)
    cosine = create_optimizer(1e-3, 100, 10, schedule="cosine", clipnorm=None)
    assert isinstance(cosine._learning_rate, WarmupCosineDecay) and cosine.global_clipnorm is None
    with_multipliers = create_optimizer(1e-3, 100, 10, lr_multipliers={"a/kernel": 0.5})
    assert type(with_multipliers) is AdamW and dict(with_multipliers.lr_multipliers) == {"a/kernel": 0.5}



# --- fused AdamW update ------------------------------------------------------

import functools
import os
import subprocess
import sys
import textwrap

import keras
import tensorflow as tf

from kzoo.training.optimization import AdamW
from tests.conftest import REPO

EXCLUDED = ("bias", "gamma", "beta")
BETAS = {
    # `1 - beta` exact in float32 and float64: Keras rounds the float64
    # `1 - beta`, the kernel computes it in float32, which for 0.999 alone
    # moves the second moment by 1.3e-5 relative.
    "dyadic": dict(beta_1=0.875, beta_2=1 - 2**-10),
    "bert": dict(beta_1=0.9, beta_2=0.999),
}
MULTIPLIERS = (0.25, 0.5, 2.0, 0.5, 1.0, 3.0, 1.0)  # per trainable variable of _tiny_model


def _tiny_model(seed=0):
    """Embedding (IndexedSlices gradients), LayerNorm, Dense kernels and biases."""
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(20, 8, name="embed")(tokens)
    x = keras.layers.LayerNormalization(name="norm")(x)
    x = keras.layers.Dense(8, activation="tanh", name="hidden")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(3, name="logits")(x))


def _data():
    rng = np.random.default_rng(0)  # 20 rows, 24 tokens a batch: rows repeat within batches
    return rng.integers(0, 20, (20, 6)).astype("int32"), rng.integers(0, 3, 20)


def _optimizer(kind, model, clipnorm=None, betas="dyadic", multipliers=False):
    """keras.optimizers.AdamW ("keras") or kzoo's AdamW, "fused" or "unfused"
    (Keras' arithmetic), with the same hyperparameters and exclusions."""
    kwargs = dict(learning_rate=WarmupLinearDecay(1e-2, total_steps=10, warmup_steps=3), weight_decay=0.1,
                  epsilon=1e-6, global_clipnorm=clipnorm, **BETAS[betas])
    if kind == "keras":
        assert not multipliers
        optimizer = keras.optimizers.AdamW(**kwargs)
        optimizer.exclude_from_weight_decay(var_names=list(EXCLUDED))
        return optimizer
    if multipliers:
        multipliers = {v.path: m for v, m in zip(model.trainable_variables, MULTIPLIERS, strict=True)}
    optimizer = AdamW(lr_multipliers=multipliers or None, weight_decay_exclude_names=EXCLUDED, **kwargs)
    optimizer._fused_kernels = kind == "fused"
    return optimizer


@functools.lru_cache(maxsize=None)
def _trained(kind, clipnorm=None, betas="dyadic", multipliers=False, jit_compile=False, policy=None):
    """5 optimizer steps of `fit` (cached: tests share runs). Returns
    (weights, optimizer variables, fused kernels traced): the kernels are the
    `ResourceApplyAdam` ops created in fit's traced step, so a silent fallback
    to the unfused update shows as none."""
    kernels = []
    original = tf.raw_ops.ResourceApplyAdam

    def spy(**kwargs):
        op = original(**kwargs)
        kernels.append(op)
        return op

    previous = keras.config.dtype_policy()
    tf.raw_ops.ResourceApplyAdam = spy
    try:
        if policy:
            keras.config.set_dtype_policy(policy)
        model = _tiny_model()
        optimizer = _optimizer(kind, model, clipnorm, betas, multipliers)
        model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=jit_compile)
        x, y = _data()
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    finally:
        tf.raw_ops.ResourceApplyAdam = original
        keras.config.set_dtype_policy(previous)
    assert int(model.optimizer.iterations) == 5
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert {v.dtype for v in model.trainable_variables} == {"float32"}
    assert all(isinstance(op, tf.Operation) and op.type == "ResourceApplyAdam" for op in kernels)
    assert all(isinstance(op.graph, tf.__internal__.FuncGraph) for op in kernels)
    return ([np.asarray(v) for v in model.trainable_variables], [np.asarray(v) for v in model.optimizer.variables],
            len(kernels))


def _assert_fused(run):
    kernels = run[2]
    assert kernels and kernels % 7 == 0, kernels  # one per trainable variable and trace


def _assert_close(got, want, rtol, what):
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        scale = float(np.max(np.abs(b))) or 1.0  # relative to the tensor's scale (entries pass through 0)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=f"{what} {i}")


def _assert_same_run(run, want, rtol, weight_rtol=None):
    _assert_close(run[1], want[1], rtol, "optimizer variable")  # iterations, m and v of every variable
    _assert_close(run[0], want[0], weight_rtol or rtol, "weight")


@pytest.mark.parametrize(
    "clipnorm,betas,rtol,weight_rtol",
    [
        (None, "dyadic", 1e-6, 1e-6),  # IndexedSlices reach update_step (duplicate rows: Keras' sparse second moment)
        (1.0, "bert", 3e-5, 1e-5),  # the global clip densifies them; for the betas see BETAS
    ],
)
def test_fused_adamw_matches_keras_adamw(clipnorm, betas, rtol, weight_rtol):
    want = _trained("keras", clipnorm, betas)
    assert want[2] == 0
    run = _trained("fused", clipnorm, betas)
    _assert_fused(run)
    _assert_same_run(run, want, rtol, weight_rtol)
    initial = [np.asarray(v) for v in _tiny_model().trainable_variables]
    assert all(not np.allclose(a, b) for a, b in zip(run[0], initial))


def test_fused_adamw_with_multipliers_matches_unfused():
    """Against kzoo's unfused update (Keras' arithmetic with the multiplied
    rate; tests/training/test_layerwise_lr.py checks multipliers against
    numpy), clipped (dense) gradients."""
    want = _trained("unfused", 1.0, multipliers=True)
    assert want[2] == 0
    run = _trained("fused", 1.0, multipliers=True)
    _assert_fused(run)
    _assert_same_run(run, want, 1e-6)


def test_fused_adamw_under_xla_matches_graph():
    run = _trained("fused", jit_compile=True)
    _assert_fused(run)
    _assert_same_run(run, _trained("fused"), 1e-5, 1e-6)


def test_fused_adamw_under_loss_scaling():
    want = _trained("keras", 1.0, policy="mixed_float16")
    run = _trained("fused", 1.0, policy="mixed_float16")
    _assert_fused(run)
    _assert_same_run(run, want, 1e-6)  # the optimizer variables include the loss scale and its counter


def test_fused_adamw_falls_back_where_it_must():
    float16 = keras.Variable(np.ones((2, 2)), dtype="float16", name="w16")
    float32 = keras.Variable(np.ones((2, 2)), dtype="float32", name="w32")

    def kernels(optimizer, variable):
        optimizer.build([variable])
        graph = tf.function(lambda: optimizer.apply([tf.ones((2, 2), variable.dtype)], [variable]))
        return [op.type for op in graph.get_concrete_function().graph.get_operations() if op.type.startswith("Resource")]

    assert kernels(AdamW(1e-3), float32) == ["ResourceApplyAdam"]
    assert kernels(AdamW(1e-3), float16) == []
    assert kernels(AdamW(1e-3, amsgrad=True), float32) == []
    # amsgrad: Keras' own update, with the multipliers still applied.
    reference = keras.Variable(np.ones((2, 2)), dtype="float32", name="ref")
    keras.optimizers.AdamW(0.5, amsgrad=True).apply([tf.ones((2, 2))], [reference])
    AdamW(1.0, amsgrad=True, lr_multipliers={float32.path: 0.5}).apply([tf.ones((2, 2))], [float32])
    np.testing.assert_allclose(np.asarray(float32), np.asarray(reference), rtol=1e-6)


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import tensorflow as tf
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    sys.path.insert(0, sys.argv[1])
    from tests.training.test_optimization import _data, _optimizer, _tiny_model

    devices = []
    original = tf.raw_ops.ResourceApplyAdam
    def spy(**kwargs):
        devices.append(kwargs["var"].device[-5:])
        return original(**kwargs)
    tf.raw_ops.ResourceApplyAdam = spy

    with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
        model = _tiny_model()
        model.compile(_optimizer("fused", model), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    arrays = {"devices": np.array(devices)}
    for i, variable in enumerate(model.trainable_variables + model.optimizer.variables):
        for j, component in enumerate(variable.value.values):  # each replica's copy
            arrays[f"{i}_{j}"] = np.asarray(component)
    np.savez(sys.argv[2], **arrays)
    """
)


def test_fused_adamw_under_mirrored_strategy_matches_single_device(tmp_path):
    out = str(tmp_path / "mirrored.npz")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    try:
        proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, REPO, out], capture_output=True, text=True,
                              timeout=240, env=env, cwd=REPO)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"MirroredStrategy subprocess timed out after 240 s; stderr tail:\n{(e.stderr or '')[-3000:]}")
    if proc.returncode != 0 or not os.path.exists(out):
        pytest.fail(f"MirroredStrategy subprocess failed (rc {proc.returncode}); stderr tail:\n{proc.stderr[-3000:]}")
    single = _trained("fused")  # the same model, data and optimizer (IndexedSlices gradients) on one device
    with np.load(out) as arrays:
        devices = list(arrays["devices"])
        replicas = [[arrays[f"{i}_{j}"] for j in range(2)] for i in range(len(single[0]) + len(single[1]))]
        assert len(arrays.files) == 1 + 2 * len(replicas)  # every variable and slot mirrored on exactly 2 devices
    # Fused kernels for all 7 variables (per trace), each replica's on its own component.
    assert set(devices) == {"CPU:0", "CPU:1"} and devices.count("CPU:0") == devices.count("CPU:1"), devices
    assert devices.count("CPU:0") % 7 == 0, devices
    for i, (first, second) in enumerate(replicas):
        np.testing.assert_array_equal(first, second, err_msg=f"replicas differ: variable {i}")
    got = [first for first, _ in replicas]
    _assert_same_run((got[: len(single[0])], got[len(single[0]):]), single, 1e-5)


def test_keras_hubs_recipe_is_reproduced_exactly():
    """--optimizer=adam --weight_decay=0 --lr_schedule=constant --clip_norm=0 is keras-hub's compile(): Keras' Adam
    at a constant rate, unclipped; three steps on the same gradients give the same variables."""
    schedule = WarmupConstant(1e-3, total_steps=100, warmup_steps=10)
    np.testing.assert_allclose([float(schedule(s)) for s in (0, 5, 10, 99, 1000)], [0, 5e-4, 1e-3, 1e-3, 1e-3],
                               rtol=1e-6)
    rng = np.random.default_rng(0)
    start = rng.normal(size=(4, 3)).astype("float32")
    grads = [rng.normal(scale=5.0, size=(4, 3)).astype("float32") for _ in range(3)]  # large: a clip would bind
    ours = keras.Variable(start, name="kernel")
    theirs = keras.Variable(start, name="kernel")
    kzoo_adam = create_optimizer(5e-5, num_train_steps=3, warmup_steps=0, weight_decay=0.0, clipnorm=0,
                                 schedule="constant", optimizer="adam")
    assert kzoo_adam.global_clipnorm is None and kzoo_adam.epsilon == 1e-7
    keras_adam = keras.optimizers.Adam(5e-5)
    for g in grads:
        kzoo_adam.apply_gradients([(tf.constant(g), ours)])
        keras_adam.apply_gradients([(tf.constant(g), theirs)])
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=0, atol=1e-7)
    assert np.abs(ours.numpy() - start).max() > 1e-4  # the steps moved it
    with pytest.raises(ValueError, match="optimizer 'adam' has no weight decay"):
        create_optimizer(5e-5, 10, optimizer="adam")


@pytest.mark.parametrize("options, message", [
    (dict(optimizer="adam"), r"optimizer='adam' has no weight decay: add --weight_decay=0"),
    (dict(optimizer="sgd"), r"optimizer='sgd': expected one of \['adamw', 'adam'\]"),
    (dict(clip_norm=-1.0), r"clip_norm=-1.0: expected >= 0"),
])
def test_recipe_options_are_checked(options, message):
    from kzoo.training.recipe import AdaptationOptions

    with pytest.raises(ValueError, match=message):
        AdaptationOptions(**options).validate()
    AdaptationOptions(optimizer="adam", weight_decay=0.0, clip_norm=0.0, lr_schedule="constant").validate()
