"""Preemption: a training process killed with SIGKILL mid-epoch and started
again with the same command resumes from its last backup and ends with the
optimizer step count of an uninterrupted run; checkpoints and backups only
ever appear at their final paths through a rename."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.training import callbacks as callbacks_lib
from kzoo.training.callbacks import AtomicBackupAndRestore, AtomicModelCheckpoint, TMP_PREFIX
from kzoo.training.common import standard_callbacks
from tests.conftest import REPO

HELPER = os.path.join(REPO, "tests", "training", "preemption_train.py")
RUN_CLASSIFIER = os.path.join(REPO, "tools", "run_classifier.py")


# --------------------------------------------------------------------------
# Helpers


def _start(args, log_path, cwd):
    log = open(log_path, "w")
    try:
        return subprocess.Popen([sys.executable] + args, stdout=log, stderr=subprocess.STDOUT, cwd=str(cwd),
                                env=dict(os.environ, PYTHONPATH=REPO))
    finally:
        log.close()  # the child holds its own descriptor


def _finish(process, timeout):
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def _kill(process):
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _wait_for(condition, process, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            raise AssertionError(f"the process exited ({process.returncode}) before {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _progress(model_dir):
    path = os.path.join(model_dir, "progress.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def _leftover_temporaries(folder):
    return [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
            if name.startswith(TMP_PREFIX)]


def _assert_backup_consistent(backup_dir):
    """What a restart would trust: the metadata and the complete weights file it names."""
    metadata = _read_json(os.path.join(backup_dir, "training_metadata.json"))
    assert metadata is not None, os.listdir(backup_dir)
    model_file = os.path.join(backup_dir, metadata["weights"])
    assert os.path.exists(model_file)
    import h5py

    with h5py.File(model_file, "r") as f:  # complete: opens, has layers and the optimizer
        assert "layers" in f and "optimizer" in f
    return metadata


# --------------------------------------------------------------------------
# A real process, a real SIGKILL, the same command again


EPOCHS, STEPS, BACKUP_STEPS = 3, 6, 4


@pytest.mark.slow
def test_sigkill_mid_epoch_then_same_command_resumes_with_same_step_count(tmp_path):
    model_dir = str(tmp_path / "run")
    command = [HELPER, model_dir, f"--epochs={EPOCHS}", f"--steps_per_epoch={STEPS}",
               f"--backup_steps={BACKUP_STEPS}", "--sleep=0.2"]
    backup_dir = os.path.join(model_dir, "backup")
    first = _start(command, tmp_path / "first.log", tmp_path)
    try:
        # Step 8 is backed up (every 4 steps) in epoch 2 (0-based 1) after 2 of its 6 batches;
        # kill after step 9, while the next backup (step 12, end of that epoch) is >= 3 batches away.
        _wait_for(lambda: any(r["event"] == "batch" and r["iterations"] >= 9 for r in _progress(model_dir)),
                  first, 120, "step 9")
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
    finally:
        _kill(first)
    killed_at = max(r["iterations"] for r in _progress(model_dir))
    assert 9 <= killed_at < EPOCHS * STEPS
    metadata = _assert_backup_consistent(backup_dir)
    assert (metadata["epoch"], metadata["steps_in_epoch"], metadata["iterations"]) == (1, 2, 8)  # mid-epoch

    second = _start(command, tmp_path / "second.log", tmp_path)
    try:
        rc = _finish(second, 240)
    finally:
        _kill(second)
    assert rc == 0, (tmp_path / "second.log").read_text()[-3000:]
    resumed = [r for r in _progress(model_dir) if r["pid"] == second.pid]
    assert resumed[0] == {"event": "begin", "pid": second.pid, "iterations": 8}  # not from step 0
    batches = [(r["epoch"], r["batch"], r["iterations"], r["trained"]) for r in resumed[1:]]
    # Epoch 2's first 2 batches (trained before the kill) are drawn and skipped, then training goes on.
    assert batches[:3] == [(1, 0, 8, False), (1, 1, 8, False), (1, 2, 9, True)]
    assert [b[2] for b in batches if b[3]] == list(range(9, EPOCHS * STEPS + 1))
    result = _read_json(os.path.join(model_dir, "result.json"))
    assert result == {"iterations": EPOCHS * STEPS, "epochs_trained": EPOCHS - 1}  # == uninterrupted run
    assert not os.path.exists(backup_dir)  # deleted once fit completed
    assert sorted(os.listdir(os.path.join(model_dir, "checkpoints"))) == [
        f"epoch-{e:02d}.weights.h5" for e in range(1, EPOCHS + 1)]
    assert _leftover_temporaries(model_dir) == []


def _tiny_official_checkpoint(folder):
    from kzoo.checkpoints import save_official_bert
    from kzoo.configs import BertConfig
    from kzoo.models import bert_encoder
    from tests.conftest import minilm_vocab_file

    vocab = minilm_vocab_file()
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    os.makedirs(folder)
    save_official_bert(bert_encoder(config), os.path.join(folder, "bert_model.ckpt"))
    config.to_json_file(os.path.join(folder, "bert_config.json"))
    shutil.copyfile(vocab, os.path.join(folder, "vocab.txt"))


def test_run_classifier_killed_mid_epoch_resumes_to_the_uninterrupted_step_count(tmp_path):
    from kzoo import data
    from kzoo.tasks.classification import ClassifierRun, read_inputs

    checkpoint = str(tmp_path / "tiny_bert")
    _tiny_official_checkpoint(checkpoint)
    model_dir = str(tmp_path / "run")
    epochs, batch_size = 2, 16
    command = [RUN_CLASSIFIER, "--task=tsv", f"--init_checkpoint={checkpoint}", f"--model_dir={model_dir}",
               "--export_dir=", f"--num_train_epochs={epochs}", f"--train_batch_size={batch_size}",
               "--max_seq_length=32", "--nobucket_by_length", "--backup_steps=3", "--verbose=0"]
    train = read_inputs(ClassifierRun(task="tsv"))[0]
    uninterrupted = epochs * data.num_batches(np.zeros(len(train)), batch_size)
    backup_metadata = os.path.join(model_dir, "backup", "training_metadata.json")

    def mid_second_epoch():
        metadata = _read_json(backup_metadata)
        return metadata if metadata and metadata["epoch"] == 1 and metadata["steps_in_epoch"] > 0 else None

    first = _start(command, tmp_path / "first.log", tmp_path)
    try:
        _wait_for(mid_second_epoch, first, 240, "a backup in the middle of the second epoch")
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
    finally:
        _kill(first)
    assert not os.path.exists(os.path.join(model_dir, "model.keras"))
    metadata = _assert_backup_consistent(os.path.join(model_dir, "backup"))
    assert 0 < metadata["iterations"] < uninterrupted

    second = _start(command, tmp_path / "second.log", tmp_path)
    try:
        rc = _finish(second, 300)
    finally:
        _kill(second)
    log = (tmp_path / "second.log").read_text()
    assert rc == 0, log[-3000:]
    restored = re.search(r"resuming from backup .*: epoch (\d+), (\d+) of its batches already trained .*"
                         r"optimizer step (\d+)", log)
    assert restored, log[-3000:]
    assert (int(restored[1]) - 1, int(restored[2]), int(restored[3])) == (
        metadata["epoch"], metadata["steps_in_epoch"], metadata["iterations"])
    import kzoo  # noqa: F401  (registers kzoo's serializable layers, optimizers and schedules)

    model = keras.saving.load_model(os.path.join(model_dir, "model.keras"))
    assert int(model.optimizer.iterations.numpy()) == uninterrupted
    assert not os.path.exists(os.path.join(model_dir, "backup"))
    assert sorted(os.listdir(os.path.join(model_dir, "checkpoints"))) == [
        f"epoch-{e:02d}.weights.h5" for e in range(1, epochs + 1)]
    assert _leftover_temporaries(model_dir) == []


# --------------------------------------------------------------------------
# The same resume logic in-process (fast), and atomicity


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


def _data(steps=5, batch_size=2):
    x = np.random.default_rng(0).normal(size=(steps * batch_size, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, x.sum(1, keepdims=True))).shuffle(
        len(x), seed=0, reshuffle_each_iteration=True).batch(batch_size)


class _Preempted(Exception):
    pass


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_iteration):
        super().__init__()
        self.at_iteration = at_iteration

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.at_iteration:
            raise _Preempted(f"preempted after step {self.at_iteration}")


class _Steps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append((batch, int(self.model.optimizer.iterations.numpy()), bool(logs)))


def test_in_process_resume_mid_epoch_matches_uninterrupted_steps_and_keras_own_does_not(tmp_path):
    # Interrupted after step 8 of 3 x 5 (epoch 2, batch 3); backups every 3 steps: step 6 restored.
    model = _model()
    with pytest.raises(_Preempted):
        model.fit(_data(), epochs=3, verbose=0, shuffle=False,
                  callbacks=[AtomicBackupAndRestore(tmp_path / "ours", save_freq=3), _Interrupt(8)])
    model, steps = _model(), _Steps()
    backup = AtomicBackupAndRestore(tmp_path / "ours", save_freq=3)
    history = model.fit(_data(), epochs=3, verbose=0, shuffle=False, callbacks=[backup, steps])
    assert backup.restored["iterations"] == 6 and backup.restored["restored_iterations"] == 6
    assert (backup.restored["epoch"], backup.restored["steps_in_epoch"]) == (1, 1)
    assert steps.seen[:2] == [(0, 6, False), (1, 7, True)]
    assert int(model.optimizer.iterations.numpy()) == 15 and len(history.history["loss"]) == 2
    assert model._initial_epoch is None and not os.path.exists(tmp_path / "ours")
    assert getattr(model.train_function, "kzoo_skip_original", None) is None  # unwrapped
    # A second fit on the same model is a fresh one (no leftover initial epoch, no skipping).
    model.fit(_data(), epochs=1, verbose=0, shuffle=False, callbacks=[AtomicBackupAndRestore(tmp_path / "ours")])
    assert int(model.optimizer.iterations.numpy()) == 20

    # Keras 3's own BackupAndRestore restarts the interrupted epoch from its first batch.
    model = _model()
    with pytest.raises(_Preempted):
        model.fit(_data(), epochs=3, verbose=0, shuffle=False,
                  callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "keras"), save_freq=3), _Interrupt(8)])
    model = _model()
    model.fit(_data(), epochs=3, verbose=0, shuffle=False,
              callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "keras"))])
    assert int(model.optimizer.iterations.numpy()) == 16  # one step too many (the 6th is trained twice)


def test_checkpoints_and_backups_appear_only_through_a_rename(tmp_path, monkeypatch):
    writes, renames = [], []
    real_save_weights, real_replace = keras.Model.save_weights, os.replace

    def spy_save_weights(self, filepath, *args, **kwargs):
        assert not os.path.exists(filepath)
        writes.append(str(filepath))
        return real_save_weights(self, filepath, *args, **kwargs)

    def spy_replace(src, dst, *args, **kwargs):
        renames.append((str(src), str(dst)))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", spy_save_weights)
    monkeypatch.setattr(os, "replace", spy_replace)
    model_dir = str(tmp_path / "run")
    callbacks = standard_callbacks(model_dir, backup_steps=2)
    callbacks[-1].delete_checkpoint = False  # keep the last backup to look at
    model = _model()
    model.fit(_data(steps=3), epochs=2, verbose=0, shuffle=False, callbacks=callbacks)

    assert writes and all(os.path.basename(w).startswith(TMP_PREFIX) for w in writes)
    for src, dst in renames:  # every rename: a temporary beside its target, same ending
        assert os.path.dirname(src) == os.path.dirname(dst)
        assert os.path.basename(src).startswith(TMP_PREFIX) and src.endswith(os.path.basename(dst))
    targets = {os.path.relpath(dst, model_dir) for _, dst in renames}
    assert {"checkpoints/epoch-01.weights.h5", "checkpoints/epoch-02.weights.h5",
            "backup/training_metadata.json"} <= targets
    # Backups at steps 2, 4 and 6 (every 2 of 2 x 3 steps), and at the end of each epoch.
    assert sorted(t for t in targets if t.startswith("backup/backup-")) == [
        "backup/backup-epoch0000-step0000002.weights.h5", "backup/backup-epoch0001-step0000000.weights.h5",
        "backup/backup-epoch0001-step0000001.weights.h5", "backup/backup-epoch0001-step0000003.weights.h5",
        "backup/backup-epoch0002-step0000000.weights.h5"]
    assert len(writes) == 2 + 5
    for root, _, names in os.walk(model_dir):
        for name in names:
            path = os.path.relpath(os.path.join(root, name), model_dir)
            if path.startswith(("checkpoints", "backup")):
                assert path in targets, path
    # Only the committed backup is kept.
    assert sorted(os.listdir(os.path.join(model_dir, "backup"))) == [
        "backup-epoch0002-step0000000.weights.h5", "training_metadata.json"]
    assert _leftover_temporaries(model_dir) == []


def _failing_save_weights(self, filepath, *args, **kwargs):
    with open(filepath, "wb") as f:  # a half-written file, then the writer dies
        f.write(b"\x89HDF\r\n half")
    raise OSError("disk full (simulated)")


def test_a_failed_checkpoint_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    model = _model()
    path = str(tmp_path / "checkpoints" / "epoch-{epoch:02d}.weights.h5")
    checkpoint = AtomicModelCheckpoint(path, save_weights_only=True)
    model.fit(_data(), epochs=1, verbose=0, shuffle=False, callbacks=[checkpoint])
    final = tmp_path / "checkpoints" / "epoch-01.weights.h5"
    before = final.read_bytes()
    monkeypatch.setattr(keras.Model, "save_weights", _failing_save_weights)
    with pytest.raises(OSError, match="simulated"):
        checkpoint._save_model(epoch=0, batch=None, logs={})  # the same epoch-01 file again
    assert final.read_bytes() == before
    assert os.listdir(tmp_path / "checkpoints") == ["epoch-01.weights.h5"]
    monkeypatch.undo()
    model = _model()
    model.optimizer.build(model.trainable_variables)
    model.load_weights(str(final))  # still a complete file, optimizer state included
    assert int(model.optimizer.iterations.numpy()) == 5


def test_a_kill_between_backup_files_leaves_a_consistent_backup(tmp_path, monkeypatch):
    backup_dir = tmp_path / "backup"
    model = _model()
    model.fit(_data(), epochs=1, verbose=0, shuffle=False,
              callbacks=[AtomicBackupAndRestore(backup_dir, delete_checkpoint=False)])
    first_epoch_weights = [w.numpy().copy() for w in model.weights]
    metadata = _read_json(backup_dir / "training_metadata.json")
    assert (metadata["epoch"], metadata["steps_in_epoch"], metadata["iterations"]) == (1, 0, 5)

    # 1. The weights write dies midway: nothing at a backup name changes, no temporary is left.
    monkeypatch.setattr(keras.Model, "save_weights", _failing_save_weights)
    with pytest.raises(OSError, match="simulated"):
        model.fit(_data(), epochs=2, verbose=0, shuffle=False, callbacks=[AtomicBackupAndRestore(backup_dir)])
    monkeypatch.undo()
    assert _read_json(backup_dir / "training_metadata.json") == metadata
    assert sorted(os.listdir(backup_dir)) == [metadata["weights"], "training_metadata.json"]

    # 2. Killed after the new weights file is in place but before the metadata names it:
    #    the restart restores the older, consistent pair (and the orphan is cleaned up later).
    real_write_json = callbacks_lib._write_json

    def die_on_metadata(path, value):
        raise _Preempted("killed before the commit")

    model = _model()
    monkeypatch.setattr(callbacks_lib, "_write_json", die_on_metadata)
    with pytest.raises(_Preempted):
        model.fit(_data(), epochs=2, verbose=0, shuffle=False, callbacks=[AtomicBackupAndRestore(backup_dir)])
    monkeypatch.setattr(callbacks_lib, "_write_json", real_write_json)
    assert len(os.listdir(backup_dir)) == 3  # the committed pair + an uncommitted weights file
    assert _read_json(backup_dir / "training_metadata.json") == metadata

    model = _model()
    backup = AtomicBackupAndRestore(backup_dir, delete_checkpoint=False)
    backup.set_model(model)
    backup.on_train_begin()
    assert backup.restored["restored_iterations"] == 5
    for restored, expected in zip(model.weights, first_epoch_weights):
        np.testing.assert_array_equal(restored.numpy(), expected)
    model._initial_epoch = None

    model = _model()
    model.fit(_data(), epochs=2, verbose=0, shuffle=False,
              callbacks=[AtomicBackupAndRestore(backup_dir, delete_checkpoint=False)])
    assert int(model.optimizer.iterations.numpy()) == 10
    assert sorted(os.listdir(backup_dir)) == ["backup-epoch0002-step0000000.weights.h5", "training_metadata.json"]
