"""Freezing, feature extraction and gradual unfreezing: frozen weights never move."""

import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo import models
from kzoo.configs import BertConfig
from kzoo.training import freezing
from kzoo.training.optimization import create_optimizer
from tests.conftest import REPO, random_inputs


def _classifier(config, seed=0):
    keras.utils.set_random_seed(seed)
    return models.bert_classifier(config, num_classes=3, dropout=0.0)


def _dataset(config, batches=8, batch=4, seq=8, seed=0):
    features = random_inputs(batch * batches, seq, config.vocab_size, seed=seed)
    labels = np.random.default_rng(seed).integers(0, 3, batch * batches).astype("int32")
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch)


def _compile(model, steps=8):
    model.compile(optimizer=create_optimizer(1e-2, steps, 0, weight_decay=0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def _snapshot(model):
    groups = freezing.group_variables(freezing.layer_groups(model))
    return {g: [v.numpy().copy() for v in vs] for g, vs in groups.items()}


def _moved(before, after):
    return {g: any(not np.array_equal(a, b) for a, b in zip(before[g], after[g])) for g in before}


def test_layer_groups_cover_every_weight_once(tiny_config):
    model = _classifier(tiny_config)
    groups = freezing.layer_groups(model)
    assert list(groups) == ["embeddings", "layer_0", "layer_1", "head"]
    variables = freezing.group_variables(groups)
    ids = [id(v) for vs in variables.values() for v in vs]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(v) for v in model.weights}
    head_names = {v.path.split("/")[0] for v in variables["head"]}
    assert {"pooler", "classifier"} <= head_names


@pytest.mark.parametrize("k, frozen", [(0, set()), (-1, {"embeddings"}), (1, {"embeddings", "layer_0"}),
                                       (2, {"embeddings", "layer_0", "layer_1"})])
def test_freeze_layers_semantics(tiny_config, k, frozen):
    model = _classifier(tiny_config)
    freezing.freeze(model, freeze_layers=k)
    variables = freezing.group_variables(freezing.layer_groups(model))
    trainable = {id(v) for v in model.trainable_weights}
    for group, vs in variables.items():
        assert all((id(v) in trainable) == (group not in frozen) for v in vs), group


def test_feature_extraction_trains_only_the_task_head(tiny_config):
    model = _classifier(tiny_config)
    freezing.freeze(model, feature_extraction=True)
    head = model.get_layer("classifier")
    assert {id(v) for v in model.trainable_weights} == {id(v) for v in head.trainable_weights}
    trainable, total = freezing.count_parameters(model)
    assert trainable == 16 * 3 + 3
    assert total == sum(int(np.prod(v.shape)) for v in model.weights)


def test_freeze_layers_out_of_range(tiny_config):
    with pytest.raises(ValueError, match="freeze_layers=3"):
        freezing.freeze(_classifier(tiny_config), freeze_layers=3)


def test_log_line_has_count_and_percentage(tiny_config):
    model = _classifier(tiny_config)
    freezing.freeze(model, feature_extraction=True)
    line = freezing.log_trainable_parameters(model)
    _, total = freezing.count_parameters(model)
    assert line == f"trainable parameters: 51 of {total:,} ({100 * 51 / total:.2f}%)"


def test_frozen_weights_do_not_move_in_fit(tiny_config):
    model = _classifier(tiny_config)
    freezing.freeze(model, freeze_layers=1)
    _compile(model)
    before = _snapshot(model)
    model.fit(_dataset(tiny_config), epochs=1, verbose=0)
    moved = _moved(before, _snapshot(model))
    assert moved == {"embeddings": False, "layer_0": False, "layer_1": True, "head": True}


def test_stages():
    names = ["embeddings", "layer_0", "layer_1", "head"]
    assert freezing.unfreezing_stages(names) == [
        ["head"], ["head", "layer_1"], ["head", "layer_1", "layer_0"], ["head", "layer_1", "layer_0", "embeddings"]]
    assert freezing.unfreezing_stages(names, start_with_embeddings=True) == [
        ["head", "embeddings"], ["head", "embeddings", "layer_1"], ["head", "embeddings", "layer_1", "layer_0"]]
    assert freezing.unfreezing_stages(names, chain_thaw=True) == [
        ["head"], ["embeddings"], ["layer_0"], ["layer_1"], ["head"], names]


class _StepSnapshots(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.snapshots = []

    def on_train_batch_end(self, batch, logs=None):
        self.snapshots.append(_snapshot(self.model))


@pytest.mark.parametrize("chain_thaw", [False, True])
def test_gradual_unfreezing_moves_only_unfrozen_groups(tiny_config, chain_thaw):
    model = _classifier(tiny_config)
    _compile(model, steps=12)
    unfreezing = freezing.GradualUnfreezing(interval=2, unit="step", chain_thaw=chain_thaw)
    recorder = _StepSnapshots()
    start = _snapshot(model)
    model.fit(_dataset(tiny_config, batches=12), epochs=1, verbose=0, callbacks=[unfreezing, recorder])
    stages = unfreezing.stages
    previous = start
    for step, snapshot in enumerate(recorder.snapshots):
        trainable = set(stages[min(step // 2, len(stages) - 1)])
        moved = _moved(previous, snapshot)
        assert {g for g, m in moved.items() if m} == trainable, (step, moved)
        previous = snapshot
    assert [h[2] for h in unfreezing.history] == list(range(min(6, len(stages))))
    assert [h[0] for h in unfreezing.history] == [0, 2, 4, 6, 8, 10][:len(unfreezing.history)]


def test_gradual_unfreezing_by_epoch_logs_each_stage(tiny_config):
    model = _classifier(tiny_config)
    _compile(model, steps=12)
    unfreezing = freezing.GradualUnfreezing(interval=1, unit="epoch")
    model.fit(_dataset(tiny_config, batches=3), epochs=4, verbose=0, callbacks=[unfreezing])
    assert [(h[1], h[3]) for h in unfreezing.history] == [(0, s) for s in unfreezing.stages[:1]] + [
        (e, s) for e, s in zip(range(1, 4), unfreezing.stages[1:])]


def test_gradual_unfreezing_needs_optimizer_built_on_everything(tiny_config):
    model = _classifier(tiny_config)
    freezing.freeze(model, freeze_layers=2)
    _compile(model)
    model.optimizer.build(model.trainable_variables)  # slots for the head only
    with pytest.raises(ValueError, match="leave the model fully trainable"):
        model.fit(_dataset(tiny_config), epochs=1, verbose=0, callbacks=[freezing.GradualUnfreezing(1, "step")])


def _save_and_load(model, path):
    """`keras.models.load_model` of `model` saved to `path`, and Keras' "Skipping variable loading" warnings."""
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reloaded = keras.models.load_model(path)
    return reloaded, [str(w.message) for w in caught if "Skipping variable loading" in str(w.message)]


@pytest.mark.parametrize("how", [
    dict(freeze_layers=1), dict(freeze_layers=-1),
    dict(feature_extraction=True),
], ids=["freeze_layers=1", "freeze_layers=-1", "feature_extraction"])
def test_frozen_layers_stay_frozen_in_a_keras_file(tmp_path, tiny_config, how):
    model = _classifier(tiny_config)
    freezing.freeze(model, **how)
    _compile(model)
    features, labels = next(iter(_dataset(tiny_config, batches=1)))
    model.train_on_batch(features, labels)
    reloaded, skipped = _save_and_load(model, str(tmp_path / "model.keras"))
    assert not skipped
    assert [v.path for v in reloaded.trainable_weights] == [v.path for v in model.trainable_weights]
    frozen = [v for v in reloaded.weights if not v.trainable]
    before = [v.numpy().copy() for v in frozen]
    reloaded.train_on_batch(features, labels)
    for v, value in zip(frozen, before):
        np.testing.assert_array_equal(v.numpy(), value, err_msg=v.path)


def test_model_saved_after_gradual_unfreezing_reloads_with_its_optimizer(tmp_path, tiny_config):
    model = _classifier(tiny_config)
    _compile(model, steps=12)
    unfreezing = freezing.GradualUnfreezing(interval=1, unit="epoch")
    ds = _dataset(tiny_config, batches=2)
    model.fit(ds, epochs=2, verbose=0, callbacks=[unfreezing])  # ends in stage 2 of 4: embeddings, layer_0 frozen
    assert unfreezing.history[-1][3] == ["head", "layer_1"]
    assert len(model.trainable_weights) == len(model.weights)  # all trainable again, as the optimizer was built
    reloaded, skipped = _save_and_load(model, str(tmp_path / "model.keras"))
    assert not skipped
    assert [v.path for v in reloaded.trainable_weights] == [v.path for v in model.trainable_weights]
    for got, want in zip(reloaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    resumed = freezing.GradualUnfreezing(interval=1, unit="epoch")
    reloaded.fit(ds, epochs=3, initial_epoch=2, verbose=0, callbacks=[resumed])  # goes on in the stage of epoch 2
    assert resumed.history[-1][1:3] == (2, 2) and int(reloaded.optimizer.iterations.numpy()) == 6


MIRRORED_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from kzoo import configs, models
    from kzoo.training import freezing
    from kzoo.training.optimization import create_optimizer
    from tests.conftest import random_inputs

    config = configs.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=32, max_position_embeddings=32)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    features = random_inputs(48, 8, 64)
    labels = np.arange(48, dtype="int32") % 3
    ds = tf.data.Dataset.from_tensor_slices((features, labels)).batch(8)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = models.bert_classifier(config, num_classes=3, dropout=0.0)
        model.compile(optimizer=create_optimizer(1e-2, 6, 0, weight_decay=0.1),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    groups = freezing.group_variables(freezing.layer_groups(model))
    snapshots = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            snapshots.append({g: [v.numpy().copy() for v in vs] for g, vs in groups.items()})

    start = {g: [v.numpy().copy() for v in vs] for g, vs in groups.items()}
    unfreezing = freezing.GradualUnfreezing(interval=2, unit="step")
    model.fit(ds, epochs=1, verbose=0, callbacks=[unfreezing, Record()])
    previous = start
    for step, snap in enumerate(snapshots):
        moved = {g for g in snap if any(not np.array_equal(a, b) for a, b in zip(previous[g], snap[g]))}
        expected = set(unfreezing.stages[min(step // 2, len(unfreezing.stages) - 1)])
        assert moved == expected, (step, moved, expected)
        previous = snap
    print("OK", len(snapshots))
""")


def test_gradual_unfreezing_under_mirrored_strategy_two_cpus():
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0 and "OK 6" in result.stdout, result.stderr[-3000:]


def test_albert_layer_groups_are_its_shared_block_groups():
    """ALBERT: the embeddings with their projection, then one group per shared block group (its inner
    blocks, which run at several depths), then the head."""
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=24, family="albert", embedding_size=8, num_hidden_groups=2,
                        inner_group_num=2)
    model = _classifier(config)
    groups = freezing.layer_groups(model)
    assert list(groups) == ["embeddings", "layer_0", "layer_1", "head"]
    assert [l.name for l in groups["embeddings"]] == ["embeddings", "embedding_projection"]
    assert [l.name for l in groups["layer_1"]] == ["transformer_group_1_inner_0", "transformer_group_1_inner_1"]
    variables = freezing.group_variables(groups)
    ids = [id(v) for vs in variables.values() for v in vs]
    assert len(ids) == len(set(ids)) and set(ids) == {id(v) for v in model.weights}
    freezing.freeze(model, freeze_layers=1)  # the embeddings (projection too) and shared group 0
    frozen = {v.path.split("/")[0] for v in model.weights if not v.trainable}
    assert frozen == {"embeddings", "embedding_projection", "transformer_group_0_inner_0",
                      "transformer_group_0_inner_1"}
    with pytest.raises(ValueError, match="1..2"):
        freezing.freeze(model, freeze_layers=3)
