"""Layer-wise (discriminative) learning rates: groups, kzoo AdamW exactness,
save/load, MirroredStrategy, and the TensorBoard learning-rate logger."""

import dataclasses
import glob
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.models import bert_classifier
from kzoo.training.callbacks import LearningRateLogger
from kzoo.training.optimization import (
    AdamW,
    WarmupLinearDecay,
    create_optimizer,
    layerwise_lr_groups,
    lr_multipliers,
)
from tests.conftest import REPO, random_inputs

EXCLUDED = ("bias", "gamma", "beta")


def tiny_classifier(config, norm_first=False, seed=0):
    config = dataclasses.replace(config, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    keras.utils.set_random_seed(seed)
    return bert_classifier(config, num_classes=3, dropout=0.0, norm_first=norm_first)


def test_groups_cover_every_variable_once(tiny_config):
    model = tiny_classifier(tiny_config, norm_first=True)
    groups = layerwise_lr_groups(model, decay=0.5, head_multiplier=3.0)
    assert list(groups) == ["embeddings", "layer_0", "layer_1", "head"]
    assert {name: m for name, (m, _) in groups.items()} == {
        "embeddings": 0.25, "layer_0": 0.5, "layer_1": 1.0, "head": 3.0,
    }
    ids = [id(v) for _, vs in groups.values() for v in vs]
    assert len(ids) == len(set(ids)) and set(ids) == {id(v) for v in model.weights}
    prefixes = {"embeddings": "embeddings/", "layer_0": "transformer_layer_0/", "layer_1": "transformer_layer_1/"}
    for name, prefix in prefixes.items():
        assert groups[name][1] and all(v.path.startswith(prefix) for v in groups[name][1])
    head_layers = {v.path.split("/")[0] for v in groups["head"][1]}
    assert head_layers == {"final_layer_norm", "pooler", "classifier"}

    multipliers = lr_multipliers(groups)
    assert len(multipliers) == len(model.weights)
    assert multipliers["transformer_layer_0/attention/query/kernel"] == 0.5
    assert multipliers["classifier/logits/kernel"] == 3.0

    override = layerwise_lr_groups(model, decay=0.9, embeddings_multiplier=0.0)
    assert override["embeddings"][0] == 0.0 and override["layer_0"][0] == pytest.approx(0.9)
    # The encoder alone: its pooler is the head.
    encoder_groups = layerwise_lr_groups(model.get_layer("bert_encoder"), decay=0.5)
    assert {v.path.split("/")[0] for v in encoder_groups["head"][1]} == {"final_layer_norm", "pooler"}


def test_groups_reject_bad_input(tiny_config):
    with pytest.raises(ValueError, match="decay"):
        layerwise_lr_groups(tiny_classifier(tiny_config), decay=0.0)
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="no kzoo BERT encoder"):
        layerwise_lr_groups(plain, decay=0.9)
    dense = keras.layers.Dense(1, name="d")
    dense.build((None, 2))
    other = keras.layers.Dense(1, name="d")
    other.build((None, 2))
    with pytest.raises(ValueError, match="different multipliers"):
        lr_multipliers({"a": (1.0, dense.weights), "b": (0.5, other.weights)})
    optimizer = AdamW(1e-3, lr_multipliers={"not/a/variable": 0.5})
    with pytest.raises(ValueError, match="none of the trainable variables"):
        optimizer.build(dense.trainable_variables)
    with pytest.raises(ValueError, match=">= 0"):
        AdamW(1e-3, lr_multipliers={"d/kernel": -1.0})


def adamw_reference(values, grads_per_step, multipliers, decayed, schedule, wd, clipnorm,
                    b1=0.9, b2=0.999, eps=1e-6):
    """numpy AdamW (Keras order: clip, decoupled decay, Adam step), float64."""
    values = [np.asarray(v, np.float64).copy() for v in values]
    m = [np.zeros_like(v) for v in values]
    v2 = [np.zeros_like(v) for v in values]
    for step, grads in enumerate(grads_per_step):
        grads = [np.asarray(g, np.float64) for g in grads]
        norm = np.sqrt(sum(np.sum(g**2) for g in grads))
        if clipnorm is not None and norm > clipnorm:
            grads = [g * clipnorm / norm for g in grads]
        lr = float(schedule(step))
        t = step + 1
        for i, g in enumerate(grads):
            rate = lr * multipliers[i]
            if decayed[i]:
                values[i] -= values[i] * wd * rate
            m[i] += (g - m[i]) * (1 - b1)
            v2[i] += (g * g - v2[i]) * (1 - b2)
            alpha = rate * np.sqrt(1 - b2**t) / (1 - b1**t)
            values[i] -= m[i] * alpha / (np.sqrt(v2[i]) + eps)
    return values


def test_adamw_multipliers_are_exact_per_variable(tiny_config):
    model = tiny_classifier(tiny_config, norm_first=True)
    groups = layerwise_lr_groups(model, decay=0.5, head_multiplier=2.0)
    multipliers = lr_multipliers(groups)
    schedule = WarmupLinearDecay(1e-2, total_steps=10)
    optimizer = AdamW(
        learning_rate=schedule, weight_decay=0.1, epsilon=1e-6, global_clipnorm=1.0,
        lr_multipliers=multipliers, weight_decay_exclude_names=EXCLUDED,
    )
    variables = model.trainable_variables
    before = [np.asarray(v) for v in variables]
    rng = np.random.default_rng(0)
    grads = [[rng.normal(size=v.shape).astype("float32") for v in variables] for _ in range(2)]
    for step_grads in grads:
        optimizer.apply_gradients(zip([tf.constant(g) for g in step_grads], variables))

    per_var = [multipliers[v.path] for v in variables]
    assert sorted(set(per_var)) == [0.25, 0.5, 1.0, 2.0]
    assert per_var == [optimizer.lr_multiplier(v) for v in variables]
    decayed = [not any(n in v.name for n in EXCLUDED) for v in variables]
    assert any(decayed) and not all(decayed)
    want = adamw_reference(before, grads, per_var, decayed, schedule, wd=0.1, clipnorm=1.0)
    for v, w, b in zip(variables, want, before):
        # float32 vs float64: 1e-6 absolute on updates of ~1e-2 * m (multipliers differ by 2x).
        np.testing.assert_allclose(np.asarray(v), w, rtol=1e-5, atol=1e-6, err_msg=v.path)
        assert not np.allclose(np.asarray(v), b)
    # Sanity: the reference without multipliers is measurably different.
    plain = adamw_reference(before, grads, [1.0] * len(variables), decayed, schedule, wd=0.1, clipnorm=1.0)
    assert not np.allclose(plain[0], want[0], rtol=1e-3)


def test_weight_decay_scales_with_multiplier():
    dense = keras.layers.Dense(2, name="d")
    dense.build((None, 2))
    for v in dense.weights:
        v.assign(np.ones(v.shape, "float32"))
    optimizer = AdamW(0.1, weight_decay=0.5, lr_multipliers={dense.kernel.path: 0.2},
                      weight_decay_exclude_names=EXCLUDED)
    optimizer.apply_gradients([(np.zeros(v.shape, "float32"), v) for v in dense.weights])
    # Zero gradient: only the decoupled decay moves the kernel: 1 - 0.1 * 0.2 * 0.5.
    np.testing.assert_allclose(np.asarray(dense.kernel), 0.99, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(dense.bias), 1.0)


def test_multipliers_survive_save_and_load(tiny_config, tmp_path):
    model = tiny_classifier(tiny_config)
    groups = layerwise_lr_groups(model, decay=0.5, head_multiplier=2.0)
    model.compile(create_optimizer(1e-2, 10, 2, lr_multipliers=groups),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = random_inputs(4, 8, tiny_config.vocab_size)
    y = np.array([0, 1, 2, 1])
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)

    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is AdamW
    assert dict(loaded.optimizer.lr_multipliers) == lr_multipliers(groups)
    assert [v.path for v in loaded.weights] == [v.path for v in model.weights]
    # Paths are also stable in a fresh model built from config.
    assert [v.path for v in keras.Model.from_config(model.get_config()).weights] == [v.path for v in model.weights]
    assert loaded.optimizer._weight_decay_exclude_names == EXCLUDED
    bias = loaded.get_layer("bert_encoder").get_layer("pooler").weights[1]
    assert bias.name == "bias" and not loaded.optimizer._use_weight_decay(bias)

    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert [loaded.optimizer.lr_multiplier(v) for v in loaded.trainable_variables] == [
        model.optimizer.lr_multiplier(v) for v in model.trainable_variables
    ]
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7, err_msg=a.path)


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, os, sys
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import tensorflow as tf
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    sys.path.insert(0, sys.argv[1])
    from kzoo.configs import BertConfig
    from kzoo.models import bert_classifier
    from kzoo.checkpoints.mapping import encoder_entries
    from kzoo.models.walk import find_encoder
    from kzoo.training.optimization import create_optimizer, layerwise_lr_groups
    from kzoo.training.regularizers import apply_l2sp
    from tests.conftest import random_inputs

    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=32, max_position_embeddings=32, type_vocab_size=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    x = random_inputs(16, 8, 64, seed=1)
    y = np.random.default_rng(1).integers(0, 3, 16)
    keras.utils.set_random_seed(0)
    initial = bert_classifier(config, 3, dropout=0.0).get_weights()

    # DeBERTa-v3's structure (disentangled attention over log buckets, the shared relative table, ContextPooler)
    deberta = BertConfig(family="deberta_v2", vocab_size=64, hidden_size=16, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=32, max_position_embeddings=32, type_vocab_size=0,
                         use_absolute_positions=False, position_buckets=4, max_relative_positions=8,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pooler_hidden_act="gelu")
    keras.utils.set_random_seed(0)
    deberta_initial = bert_classifier(deberta, 3, dropout=0.0).get_weights()

    def train(strategy, clipnorm, l2sp=False, model_config=config):
        with strategy.scope():
            model = bert_classifier(model_config, 3, dropout=0.0)
            model.set_weights(initial if model_config is config else deberta_initial)
            if l2sp:  # the penalty is added once per replica, scaled: the same update as on one device
                pretrained = [e.variable for e in encoder_entries(find_encoder(model))]
                apply_l2sp(model, pretrained, alpha=5.0, beta=1.0)
            groups = layerwise_lr_groups(model, decay=0.5, head_multiplier=2.0)
            optimizer = create_optimizer(1e-2, 4, 1, weight_decay=0.1, clipnorm=clipnorm, lr_multipliers=groups)
            model.compile(optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        assert model.distribute_strategy.num_replicas_in_sync == strategy.num_replicas_in_sync
        history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        assert int(model.optimizer.iterations.numpy()) == 4
        return [np.asarray(w) for w in model.get_weights()], history.history["loss"]

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    # Two replicas against one device with the global norm clipped (clip 0.5), and with L2-SP and
    # no clipping (the unclipped path); a plain single-device run is the reference that shows
    # the clip and the penalty each change training (so that matching is not trivially true).
    plain, _ = train(tf.distribute.get_strategy(), None)
    result = {}
    for clipnorm, l2sp in ((0.5, False), (None, True)):
        single, single_loss = train(tf.distribute.get_strategy(), clipnorm, l2sp)
        multi, multi_loss = train(mirrored, clipnorm, l2sp)
        moved = max(float(np.max(np.abs(a - b))) for a, b in zip(single, initial))
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(single, multi))
        effect = max(float(np.max(np.abs(a - b))) for a, b in zip(single, plain))
        result[str(clipnorm) + ("+l2sp" if l2sp else "")] = {
            "moved": moved, "diff": diff, "loss": [single_loss, multi_loss], "effect": effect}
    single, single_loss = train(tf.distribute.get_strategy(), 0.5, model_config=deberta)
    multi, multi_loss = train(mirrored, 0.5, model_config=deberta)
    result["deberta 0.5"] = {"moved": max(float(np.max(np.abs(a - b))) for a, b in zip(single, deberta_initial)),
                             "diff": max(float(np.max(np.abs(a - b))) for a, b in zip(single, multi)),
                             "loss": [single_loss, multi_loss]}
    print("RESULT " + json.dumps(result))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_matches_single_device(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    try:
        proc = subprocess.run([sys.executable, str(script), REPO], capture_output=True, text=True,
                              timeout=240, env=env, cwd=REPO)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"MirroredStrategy subprocess timed out after 240 s; stderr tail:\n{(e.stderr or '')[-3000:]}")
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"MirroredStrategy subprocess failed (rc {proc.returncode}); stderr tail:\n{proc.stderr[-3000:]}")
    import json

    result = json.loads(lines[-1][len("RESULT "):])
    assert sorted(result) == ["0.5", "None+l2sp", "deberta 0.5"]
    for clipnorm, r in result.items():
        assert r["moved"] > 1e-3, (clipnorm, r)  # training really moved the weights
        if "effect" in r:  # (the BERT runs show the clip binding; DeBERTa's checks the replicas only)
            assert r["effect"] > 1e-4, (clipnorm, r)  # the clip binds / the penalty changes training
        assert r["diff"] < 1e-5, (clipnorm, r)
        np.testing.assert_allclose(r["loss"][0], r["loss"][1], rtol=1e-5)


def read_scalars(log_dir):
    values = {}
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                values.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    return values


def test_learning_rate_logger_writes_group_rates(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="a"), keras.layers.Dense(1, name="b")])
    groups = {"low": (0.25, model.layers[0].weights), "top": (1.0, model.layers[1].weights)}
    schedule = WarmupLinearDecay(1e-2, total_steps=20, warmup_steps=4)
    model.compile(keras.optimizers.Adam(schedule), loss="mse")
    logger = LearningRateLogger(str(tmp_path), groups, every_n_steps=3)
    x = np.random.default_rng(0).normal(size=(20, 3)).astype("float32")
    model.fit(x, x[:, :1], batch_size=4, epochs=2, verbose=0, callbacks=[logger])  # 5 steps / epoch

    scalars = read_scalars(str(tmp_path))
    assert set(scalars) == {"learning_rate/low", "learning_rate/top"}
    for tag, multiplier in (("learning_rate/low", 0.25), ("learning_rate/top", 1.0)):
        steps = [s for s, _ in scalars[tag]]
        assert steps == [3, 5, 6, 9, 10]  # every 3 steps, plus epoch ends (5, 10) once each
        for step, value in scalars[tag]:
            assert value == pytest.approx(float(schedule(step)) * multiplier, rel=1e-6)
    with pytest.raises(ValueError):
        LearningRateLogger(str(tmp_path), {"a": 1.0}, every_n_steps=0)


def test_albert_rates_go_by_shared_block_group():
    """A shared ALBERT block runs at several depths: it gets its group's rate; the projection goes with the
    embeddings."""
    from kzoo.configs import BertConfig

    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=24, family="albert", embedding_size=8, num_hidden_groups=2)
    model = bert_classifier(config, num_classes=2)
    groups = layerwise_lr_groups(model, decay=0.5)
    assert {name: m for name, (m, _) in groups.items()} == {"embeddings": 0.25, "layer_0": 0.5, "layer_1": 1.0,
                                                           "head": 1.0}
    multipliers = lr_multipliers(groups)
    assert len(multipliers) == len(model.weights)
    assert multipliers["embedding_projection/kernel"] == 0.25
    assert multipliers["transformer_group_0_inner_0/attention/query/kernel"] == 0.5
    assert multipliers["transformer_group_1_inner_0/output/kernel"] == 1.0
