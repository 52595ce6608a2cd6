"""kzoo.training.common: the standard callbacks and atomic writes."""

import json
import os

import keras
import pytest

from kzoo.training.callbacks import AtomicBackupAndRestore, AtomicModelCheckpoint, atomic_path
from kzoo.training.common import standard_callbacks, write_json_atomically


def test_standard_callbacks_layout(tmp_path):
    model_dir = str(tmp_path / "run")
    tensorboard, checkpoint, backup = standard_callbacks(model_dir)
    assert isinstance(tensorboard, keras.callbacks.TensorBoard)
    assert tensorboard.log_dir == os.path.join(model_dir, "logs")
    assert isinstance(checkpoint, AtomicModelCheckpoint) and isinstance(checkpoint, keras.callbacks.ModelCheckpoint)
    assert checkpoint.filepath == os.path.join(model_dir, "checkpoints", "epoch-{epoch:02d}.weights.h5")
    assert checkpoint.save_weights_only
    # Last, so that an epoch's backup follows everything the epoch wrote.
    assert isinstance(backup, AtomicBackupAndRestore) and isinstance(backup, keras.callbacks.BackupAndRestore)
    assert backup.backup_dir == os.path.join(model_dir, "backup")
    assert backup.save_freq == "epoch" and backup.delete_checkpoint
    assert standard_callbacks(model_dir, backup_steps=0)[-1].save_freq == "epoch"
    assert standard_callbacks(model_dir, backup_steps=25)[-1].save_freq == 25


def test_standard_callbacks_reject_negative_backup_steps(tmp_path):
    with pytest.raises(ValueError, match="backup_steps"):
        standard_callbacks(str(tmp_path), backup_steps=-1)
    with pytest.raises(ValueError, match="save_freq"):
        AtomicBackupAndRestore(str(tmp_path), save_freq="batch")


def test_atomic_path_keeps_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "weights.weights.h5"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert os.path.dirname(tmp) == str(tmp_path) and tmp.endswith(".weights.h5")
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["weights.weights.h5"]
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"new")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["weights.weights.h5"]


def test_write_json_atomically(tmp_path):
    path = tmp_path / "sub" / "labels.json"
    write_json_atomically(str(path), ["a", "b"])
    assert json.loads(path.read_text()) == ["a", "b"] and os.listdir(path.parent) == ["labels.json"]


def test_only_the_chief_writes_under_a_multi_worker_strategy():
    from types import SimpleNamespace

    from kzoo.training.callbacks import is_chief

    def strategy(task_type, task_id, jobs, multi_worker=True):
        spec = SimpleNamespace(as_dict=lambda: {job: ["host:1"] for job in jobs})
        return SimpleNamespace(extended=SimpleNamespace(_in_multi_worker_mode=lambda: multi_worker),
                               cluster_resolver=SimpleNamespace(task_type=task_type, task_id=task_id,
                                                                cluster_spec=lambda: spec))

    assert is_chief()  # the default strategy
    assert is_chief(strategy("worker", 1, ["worker"], multi_worker=False))
    assert is_chief(strategy("worker", 0, ["worker"]))
    assert not is_chief(strategy("worker", 1, ["worker"]))
    assert is_chief(strategy("chief", 0, ["chief", "worker"]))
    assert not is_chief(strategy("worker", 0, ["chief", "worker"]))
