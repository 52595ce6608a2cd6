"""Real kills on local disk: a process starts a write, says it is in the middle of it, and is
killed with SIGKILL there; then the readers must find only what was committed, and the next
write must work (and remove what the dead process left).

One helper process (this file run as a script) imports TensorFlow, Keras and kzoo once, then
forks one child per writer. Each child commits a first version, then starts the second write
with a hook at the chosen point that prints `{"ready": ...}` and sleeps; the test kills it at
that line. The checks run here, in the test process, on the folders the children left.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo import io as kzoo_io
from kzoo.checkpoints.official import load_official_bert, official_arrays, save_official_bert
from kzoo.configs import BertConfig
from kzoo.export import versions
from kzoo.models import bert_encoder
from kzoo.training import callbacks as callbacks_lib
from kzoo.training.callbacks import AtomicBackupAndRestore, AtomicModelCheckpoint
from kzoo.training.common import load_tokenizer, save_model, save_tokenizer, write_json_atomically
from tests.training.test_preemption import _data, _model

TINY = dict(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
            max_position_embeddings=16)
VOCAB_OLD = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "old"]
VOCAB_NEW = VOCAB_OLD[:5] + ["new", "newer"]
_NAME = [None]
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the helper forks a child per writer")


def _hang(*args, **kwargs):
    """The hook: this child is now in the middle of its write; it waits to be killed."""
    print(json.dumps({"ready": _NAME[0], "pid": os.getpid()}), flush=True)
    time.sleep(600)
    os._exit(4)


def _vocab(folder, tokens):
    path = os.path.join(folder, f"src-{len(tokens)}.txt")
    with open(path, "w") as f:
        f.write("".join(t + "\n" for t in tokens))
    return path


def _saved_model(value, then=None):
    def write(path):
        module = tf.Module()
        module.v = tf.Variable(float(value))
        module.f = tf.function(lambda: module.v + 0.0, input_signature=[])
        tf.saved_model.save(module, path)
        if then:
            then()

    return write


# --------------------------------------------------------------------------
# What each child does: a committed write, then a write that hangs half-way.


def _child_json(folder):
    path = os.path.join(folder, "labels.json")
    write_json_atomically(path, ["old"])
    os.replace = _hang  # the temporary is complete, the rename has not happened
    write_json_atomically(path, ["new"])


def _child_config(folder):
    path = os.path.join(folder, "bert_config.json")
    BertConfig(**TINY).to_json_file(path)
    os.replace = _hang
    BertConfig(**dict(TINY, hidden_size=4)).to_json_file(path)


def _child_tokenizer(folder):
    save_tokenizer(_vocab(folder, VOCAB_OLD), True, folder)
    real = shutil.copyfile

    def half_copy(src, dst, *args, **kwargs):
        real(src, dst)
        with open(dst, "r+b") as f:
            f.truncate(5)
        _hang()

    shutil.copyfile = half_copy
    save_tokenizer(_vocab(folder, VOCAB_NEW), True, folder)


def _child_model(folder):
    model = _model()
    save_model(model, folder, labels=["old"])

    def half_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"PK\x03\x04 half")
        _hang()

    keras.Model.save = half_save
    save_model(model, folder, labels=["new"])


def _child_checkpoint(folder):
    model = _model()
    checkpoint = AtomicModelCheckpoint(os.path.join(folder, "epoch-{epoch:02d}.weights.h5"), save_weights_only=True)
    model.fit(_data(steps=3), epochs=1, verbose=0, callbacks=[checkpoint])

    def half_save_weights(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"\x89HDF\r\n half")
        _hang()

    keras.Model.save_weights = half_save_weights
    checkpoint._save_model(epoch=0, batch=None, logs={})  # epoch-01 again


def _child_backup(folder):
    real, calls = callbacks_lib._write_json, []

    def write_json(path, value):  # backups after steps 2 and 3 commit; step 4's weights are written, then
        calls.append(path)
        if len(calls) == 3:
            _hang()
        real(path, value)

    callbacks_lib._write_json = write_json
    _model().fit(_data(steps=3), epochs=3, verbose=0,
                 callbacks=[AtomicBackupAndRestore(os.path.join(folder, "backup"), save_freq=2)])


def _child_export(folder):
    root = os.path.join(folder, "exp")
    versions.write_version(root, _saved_model(1))
    versions.write_version(root, _saved_model(2, then=_hang))  # written, not yet renamed into place


def _child_official(folder):
    prefix = os.path.join(folder, "bert_model.ckpt")
    keras.utils.set_random_seed(1)
    save_official_bert(bert_encoder(BertConfig(**TINY)), prefix)
    real, calls = kzoo_io.rename_file, []

    def rename_file(src, dst):  # the new data file replaces the old one, then the index...
        calls.append(dst)
        if len(calls) == 2:
            _hang()
        real(src, dst)

    kzoo_io.rename_file = rename_file
    save_official_bert(bert_encoder(BertConfig(**TINY)), prefix)


CHILDREN = {name[len("_child_"):]: f for name, f in sorted(globals().items()) if name.startswith("_child_")}


def _zygote(base, names):
    for name in names:
        folder = os.path.join(base, name)
        os.makedirs(folder)
        pid = os.fork()
        if pid == 0:
            code = 3  # returned without reaching its hook
            try:
                _NAME[0] = name
                CHILDREN[name](folder)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 2
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"reaped": name, "pid": pid, "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                          "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}), flush=True)
    print(json.dumps({"done": True}), flush=True)


# --------------------------------------------------------------------------
# The test side


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """{writer: its folder} after each child was SIGKILLed in the middle of its second write."""
    base = tmp_path_factory.mktemp("killed")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    log = open(base / "zygote.log", "w")
    zygote = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(base), *CHILDREN], stdout=subprocess.PIPE,
                              stderr=log, text=True, cwd=str(base), start_new_session=True,
                              env=dict(os.environ, PYTHONPATH=repo, OPENBLAS_NUM_THREADS="1"))
    log.close()
    watchdog = threading.Timer(300, lambda: os.killpg(zygote.pid, signal.SIGKILL))
    watchdog.start()
    reaped = {}
    try:
        for line in zygote.stdout:
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            if "ready" in event:
                os.kill(event["pid"], signal.SIGKILL)
            elif "reaped" in event:
                reaped[event["reaped"]] = event
            elif event.get("done"):
                break
        zygote.wait(timeout=60)
    finally:
        watchdog.cancel()
        if zygote.poll() is None:
            os.killpg(zygote.pid, signal.SIGKILL)
    stderr = (base / "zygote.log").read_text()[-3000:]
    for name in CHILDREN:
        assert reaped.get(name, {}).get("signal") == signal.SIGKILL, (name, reaped.get(name), stderr)
    return {name: str(base / name) for name in CHILDREN}, {name: event["pid"] for name, event in reaped.items()}


def _temporaries(folder):
    return [name for name in os.listdir(folder) if name.startswith(kzoo_io.TMP_PREFIX)]


def _left_by_the_dead(folder, pid):
    """The temporaries in `folder`; each a stale one of a killed child."""
    left = _temporaries(folder)
    assert left, os.listdir(folder)
    assert all(kzoo_io.stale_temporary(name) for name in left), left
    assert all(name.startswith(f"{kzoo_io.TMP_PREFIX}{pid}-") for name in left)
    return left


def test_json(killed):
    folders, pids = killed
    folder = folders["json"]
    path = os.path.join(folder, "labels.json")
    assert kzoo_io.read_json(path) == ["old"]
    [left] = _left_by_the_dead(folder, pids["json"])
    assert kzoo_io.read_json(os.path.join(folder, left)) == ["new"]  # complete, but never renamed
    write_json_atomically(path, ["next"])
    assert kzoo_io.read_json(path) == ["next"] and os.listdir(folder) == ["labels.json"]


def test_config(killed):
    folders, _ = killed
    path = os.path.join(folders["config"], "bert_config.json")
    assert BertConfig.from_json_file(path) == BertConfig(**TINY)
    assert len(_temporaries(folders["config"])) == 1
    BertConfig(**dict(TINY, hidden_size=4)).to_json_file(path)
    assert BertConfig.from_json_file(path).hidden_size == 4


def test_tokenizer(killed):
    folders, pids = killed
    folder = folders["tokenizer"]
    assert load_tokenizer(folder).vocabulary == tuple(VOCAB_OLD)
    _left_by_the_dead(folder, pids["tokenizer"])
    save_tokenizer(_vocab(folder, VOCAB_NEW), True, folder)
    assert load_tokenizer(folder).vocabulary == tuple(VOCAB_NEW) and not _temporaries(folder)


def test_model(killed):
    folders, pids = killed
    folder = folders["model"]
    x = np.ones((2, 3), "float32")
    loaded = keras.models.load_model(os.path.join(folder, "model.keras"))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), _model().predict(x, verbose=0), atol=1e-6)
    assert kzoo_io.read_json(os.path.join(folder, "labels.json")) == ["old"]
    _left_by_the_dead(folder, pids["model"])
    save_model(_model(), folder, labels=["new"])
    keras.models.load_model(os.path.join(folder, "model.keras"))
    assert kzoo_io.read_json(os.path.join(folder, "labels.json")) == ["new"] and not _temporaries(folder)


def test_checkpoint(killed):
    folders, pids = killed
    folder = folders["checkpoint"]
    path = os.path.join(folder, "epoch-01.weights.h5")
    model = _model()
    model.optimizer.build(model.trainable_variables)
    model.load_weights(path)  # the committed file, complete
    assert int(model.optimizer.iterations.numpy()) == 3
    _left_by_the_dead(folder, pids["checkpoint"])
    checkpoint = AtomicModelCheckpoint(os.path.join(folder, "epoch-{epoch:02d}.weights.h5"), save_weights_only=True)
    model.fit(_data(steps=3), epochs=1, verbose=0, callbacks=[checkpoint])
    assert os.listdir(folder) == ["epoch-01.weights.h5"]
    model.load_weights(path)


def test_backup(killed):
    folders, _ = killed
    backup_dir = os.path.join(folders["backup"], "backup")
    metadata = AtomicBackupAndRestore(backup_dir).read_metadata()
    assert (metadata["epoch"], metadata["steps_in_epoch"], metadata["iterations"]) == (1, 0, 3)
    assert sorted(os.listdir(backup_dir)) == [metadata["weights"], "backup-epoch0001-step0000001.weights.h5",
                                              "training_metadata.json"]  # + the uncommitted weights
    model, backup = _model(), AtomicBackupAndRestore(backup_dir, save_freq=2)
    model.fit(_data(steps=3), epochs=3, verbose=0, callbacks=[backup])
    assert backup.restored["restored_iterations"] == 3 and int(model.optimizer.iterations.numpy()) == 9
    assert not os.path.exists(backup_dir)


def test_export(killed):
    folders, pids = killed
    root = os.path.join(folders["export"], "exp")
    assert versions.committed_versions(root) == [1]
    [left] = _left_by_the_dead(root, pids["export"])
    assert left.endswith("-2") and "saved_model.pb" in os.listdir(os.path.join(root, left))
    assert versions.next_version(root) == 3  # not taken while its temporary is there
    path = versions.write_version(root, _saved_model(2))  # removes the dead write's folder first
    assert path == os.path.join(root, "2") and sorted(os.listdir(root)) == ["1", "2"]
    loaded = tf.saved_model.load(path)
    assert float(loaded.f()) == 2.0


def test_official(killed):
    folders, pids = killed
    folder = folders["official"]
    assert tf.train.latest_checkpoint(folder) is None  # the state file names a prefix without an index
    encoder = bert_encoder(BertConfig(**TINY))
    with pytest.raises(ValueError, match="expected one TF checkpoint"):
        load_official_bert(encoder, folder)
    assert sorted(n for n in os.listdir(folder) if not n.startswith(".")) == [
        "bert_model.ckpt.data-00000-of-00001", "checkpoint"]
    _left_by_the_dead(folder, pids["official"])
    save_official_bert(encoder, os.path.join(folder, "bert_model.ckpt"))
    other = bert_encoder(BertConfig(**TINY))
    load_official_bert(other, folder, strict=True)
    name = "bert/embeddings/word_embeddings"
    np.testing.assert_array_equal(official_arrays(other)[name], official_arrays(encoder)[name])
    assert not _temporaries(folder)


if __name__ == "__main__":
    _zygote(sys.argv[1], sys.argv[2:])
