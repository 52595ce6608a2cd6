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
    assert SCHEDULES == ("linear", "slanted_triangular", "cosine")
    linear = create_schedule("linear", 1e-3, 100, 10)
    assert isinstance(linear, WarmupLinearDecay) and linear.get_config()["warmup_steps"] == 10
    stlr = create_schedule("slanted_triangular", 1e-3, 1000, 70)
    assert isinstance(stlr, SlantedTriangular) and stlr.cut == 70 and stlr.cut_fraction == 0.07
    assert create_schedule("slanted_triangular", 1e-3, 1000, 0).cut_fraction == 0.1
    cosine = create_schedule("cosine", 1e-3, 100, 10)
    assert isinstance(cosine, WarmupCosineDecay) and cosine.get_config()["min_fraction"] == 0.0
    with pytest.raises(ValueError, match="linear, slanted_triangular, cosine"):
        create_schedule("exponential", 1e-3, 100, 10)


def test_schedules_serialise_by_registered_name():
    import keras

    for schedule in (
        WarmupLinearDecay(1e-3, 100, 10),
        SlantedTriangular(1e-3, 100, 0.2, 16),
        WarmupCosineDecay(1e-3, 100, 10, 0.05),
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
    assert type(optimizer) is keras.optimizers.AdamW
    assert optimizer.global_clipnorm == 1.0 and not optimizer._use_weight_decay(keras.Variable(1.0, name="bias"))
    assert isinstance(optimizer._learning_rate, WarmupLinearDecay)
    cosine = create_optimizer(1e-3, 100, 10, schedule="cosine", clipnorm=None)
    assert isinstance(cosine._learning_rate, WarmupCosineDecay) and cosine.global_clipnorm is None
    with_multipliers = create_optimizer(1e-3, 100, 10, lr_multipliers={"a/kernel": 0.5})
    assert type(with_multipliers) is AdamW and dict(with_multipliers.lr_multipliers) == {"a/kernel": 0.5}
