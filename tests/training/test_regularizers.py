"""L2-SP: penalty value, its place in the training loss, checkpoint safety."""

import dataclasses

import keras
import numpy as np
import pytest

from kzoo.models import bert_classifier
from kzoo.training.regularizers import apply_l2sp, l2sp_penalty, remove_l2sp
from tests.conftest import random_inputs

ALPHA, BETA = 0.3, 0.7


def tiny_classifier(config, seed=0):
    config = dataclasses.replace(config, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    keras.utils.set_random_seed(seed)
    return bert_classifier(config, num_classes=3, dropout=0.0)


def encoder_of(model):
    return model.get_layer("bert_encoder")


def numpy_penalty(model, anchors, alpha=ALPHA, beta=BETA):
    """alpha/2 ||w - w0||^2 over anchored trainable vars + beta/2 ||w||^2 over other trainable vars."""
    total = 0.0
    for v in model.trainable_weights:
        w = np.asarray(v, np.float64)
        if v.path in anchors:
            total += alpha / 2 * np.sum((w - anchors[v.path]) ** 2)
        else:
            total += beta / 2 * np.sum(w**2)
    return total


def perturb(model, rng, scale=0.05):
    for v in model.trainable_weights:
        v.assign(np.asarray(v) + rng.normal(scale=scale, size=v.shape).astype("float32"))


def test_penalty_is_in_model_losses_and_matches_numpy(tiny_config):
    model = tiny_classifier(tiny_config)
    encoder = encoder_of(model)
    pretrained = {v.path: np.asarray(v, np.float64) for v in encoder.weights}
    anchors = apply_l2sp(model, encoder.weights, ALPHA, BETA)
    assert set(anchors) == set(pretrained)
    assert all(not a.trainable for a in anchors.values())
    assert not {id(a) for a in anchors.values()} & {id(v) for v in model.weights}  # not tracked by the model
    # Keras picks up variable.regularizer of nested layers: one loss per trainable variable.
    assert len(model.losses) == len(model.trainable_weights)
    np.testing.assert_allclose(float(sum(model.losses)), numpy_penalty(model, pretrained), rtol=1e-5)
    assert float(sum(model.losses)) > 0  # the head's beta term

    rng = np.random.default_rng(0)
    for _ in range(3):  # several points
        perturb(model, rng)
        want = numpy_penalty(model, pretrained)
        np.testing.assert_allclose(float(sum(model.losses)), want, rtol=1e-5)
        np.testing.assert_allclose(float(l2sp_penalty(model)), want, rtol=1e-5)

    # Frozen variables contribute nothing.
    encoder.get_layer("pooler").trainable = False
    np.testing.assert_allclose(float(sum(model.losses)), numpy_penalty(model, pretrained), rtol=1e-5)
    assert len(model.losses) == len(model.trainable_weights) < len(model.weights)
    encoder.get_layer("pooler").trainable = True

    remove_l2sp(model)
    assert model.losses == [] and all(v.regularizer is None for v in model.weights)


def test_bad_arguments(tiny_config):
    model = tiny_classifier(tiny_config)
    other = tiny_classifier(tiny_config, seed=1)
    with pytest.raises(ValueError, match="not a variable of model"):
        apply_l2sp(model, encoder_of(other).weights, ALPHA, BETA)
    with pytest.raises(ValueError, match=">= 0"):
        apply_l2sp(model, encoder_of(model).weights, -1.0)
    model.get_layer("classifier").weights[0].regularizer = keras.regularizers.L2(0.1)
    with pytest.raises(ValueError, match="already has regularizer"):
        apply_l2sp(model, encoder_of(model).weights, ALPHA, BETA)


def sparse_ce(logits, y):
    logits = np.asarray(logits, np.float64)
    logits = logits - logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return float(-np.mean(log_probs[np.arange(len(y)), y]))


def test_reported_loss_is_task_loss_plus_penalty(tiny_config):
    model = tiny_classifier(tiny_config)
    pretrained = {v.path: np.asarray(v, np.float64) for v in encoder_of(model).weights}
    apply_l2sp(model, encoder_of(model).weights, ALPHA, BETA)
    perturb(model, np.random.default_rng(1))
    model.compile(keras.optimizers.SGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = random_inputs(8, 8, tiny_config.vocab_size)
    y = np.array([0, 1, 2, 1, 0, 2, 2, 1])
    task = sparse_ce(model.predict(x, verbose=0), y)
    penalty = numpy_penalty(model, pretrained)
    assert penalty > 0.01 * task
    assert model.evaluate(x, y, verbose=0) == pytest.approx(task + penalty, rel=1e-5)
    # One full-batch train step reports the loss at the weights before the update.
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert history.history["loss"][0] == pytest.approx(task + penalty, rel=1e-5)


def fit(model, x, y, alpha, steps=20):
    model.compile(keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    xs = {k: np.tile(v, (steps, 1)) for k, v in x.items()}
    model.fit(xs, np.tile(y, steps), batch_size=len(y), epochs=1, verbose=0, shuffle=False)
    assert int(model.optimizer.iterations.numpy()) == steps


def test_large_alpha_keeps_pretrained_weights_close(tiny_config):
    x = random_inputs(8, 8, tiny_config.vocab_size)
    y = np.array([0, 1, 2, 1, 0, 2, 2, 1])
    drift = {}
    for alpha in (0.0, 1e3):
        model = tiny_classifier(tiny_config)
        encoder = encoder_of(model)
        start = [np.asarray(v) for v in encoder.trainable_weights]
        if alpha:
            apply_l2sp(model, encoder.weights, alpha)
        fit(model, x, y, alpha)
        drift[alpha] = np.sqrt(sum(np.sum((np.asarray(v) - s) ** 2) for v, s in zip(encoder.trainable_weights, start)))
    assert drift[0.0] > 0.1 and drift[1e3] < 0.25 * drift[0.0], drift


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_anchors_survive_restart_and_checkpoint_restore(tiny_config, tmp_path):
    x = random_inputs(8, 8, tiny_config.vocab_size)
    y = np.array([0, 1, 2, 1, 0, 2, 2, 1])
    pretrained_weights = encoder_of(tiny_classifier(tiny_config, seed=42)).get_weights()  # "the checkpoint"

    def start_run(seed):
        """A (re)start: build, load pretrained, apply L2-SP, compile."""
        model = tiny_classifier(tiny_config, seed=seed)
        encoder_of(model).set_weights(pretrained_weights)
        anchors = apply_l2sp(model, encoder_of(model).weights, ALPHA, BETA)
        model.compile(keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model, anchors

    pretrained = {v.path: w.astype(np.float64) for v, w in zip(encoder_of(tiny_classifier(tiny_config)).weights,
                                                                pretrained_weights)}
    backup_dir = str(tmp_path / "backup")
    first, first_anchors = start_run(seed=0)
    first.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False,
              callbacks=[keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False)])
    trained = [np.asarray(v) for v in first.weights]
    assert max(np.max(np.abs(t - pretrained[v.path])) for v, t in zip(first.weights, trained)
               if v.path in pretrained) > 1e-3
    first.save_weights(str(tmp_path / "trained.weights.h5"))
    first.save(str(tmp_path / "model.keras"))  # anchors / regularisers are not part of the file
    reloaded = keras.models.load_model(str(tmp_path / "model.keras"))
    assert len(reloaded.weights) == len(first.weights) and reloaded.losses == []

    def check(model, anchors):
        for v, t in zip(model.weights, trained):
            np.testing.assert_array_equal(np.asarray(v), t)
        for path, anchor in anchors.items():
            np.testing.assert_array_equal(np.asarray(anchor), pretrained[path].astype("float32"))
        np.testing.assert_allclose(float(sum(model.losses)), numpy_penalty(model, pretrained), rtol=1e-5)
        np.testing.assert_allclose(float(sum(model.losses)), float(sum(first.losses)), rtol=1e-6)
        rng = np.random.default_rng(3)
        for _ in range(2):
            perturb(model, rng)
            np.testing.assert_allclose(float(sum(model.losses)), numpy_penalty(model, pretrained), rtol=1e-5)

    # Restart 1: load_weights after apply_l2sp.
    second, anchors = start_run(seed=1)
    second.load_weights(str(tmp_path / "trained.weights.h5"))
    check(second, anchors)

    # Restart 2: BackupAndRestore restores the finished run (no epochs left to train).
    third, anchors = start_run(seed=2)
    third.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False,
              callbacks=[keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False)])
    check(third, anchors)
