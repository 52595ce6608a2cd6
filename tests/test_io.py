"""kzoo.io and the writers built on it, on TensorFlow's in-memory file system (`ram://`, which,
like `gs://`, cannot rename a folder) and on local disk.

For each writer: what it wrote reads back, and a write that dies half-way leaves nothing a
reader trusts and does not block the next write. A death is simulated in-process here (a
write that raises at a chosen point with its cleanup disabled, or a context left open for
ever, as a killed process leaves it); tests/test_io_kill.py kills real processes on local
disk with SIGKILL. The last test trains and exports a tiny classifier entirely on `ram://`.
"""

import os
import shutil
import subprocess
import uuid

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo import io as kzoo_io
from kzoo.checkpoints.official import load_official_bert, official_arrays, save_official_bert
from kzoo.configs import BertConfig
from kzoo.export import versions
from kzoo.models import bert_classifier, bert_encoder
from kzoo.text import BertTokenizer
from kzoo.training import callbacks as callbacks_lib
from kzoo.training.callbacks import AtomicBackupAndRestore, AtomicModelCheckpoint
from kzoo.training.common import (load_tokenizer, save_model, save_tokenizer, standard_callbacks,
                                  write_json_atomically, write_text_atomically)
from tests.training.test_preemption import _Interrupt, _Preempted, _data, _model

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "play", "some", "jazz", "wake", "me", "up", "at",
         "the", "weather", "in", "paris", "##s", "is", "it", "."]
TINY = dict(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=32)
_ABANDONED = []  # writes left open for ever, as a killed process leaves them


class _Killed(BaseException):
    """The process dies here (BaseException: no `except Exception` handles it)."""


@pytest.fixture(params=["ram", "local"])
def root(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path / "root")
        return
    path = f"ram://kzoo-test-io-{uuid.uuid4().hex[:8]}"
    yield kzoo_io.join(path, "root")
    kzoo_io.rmtree(path)


@pytest.fixture
def ram_root():
    """A ram:// folder, for the writers whose local-disk side tests/test_io_kill.py covers with real kills."""
    path = f"ram://kzoo-test-io-{uuid.uuid4().hex[:8]}"
    yield kzoo_io.join(path, "root")
    kzoo_io.rmtree(path)


def _dead_pid():
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _stale_name(name):
    """A temporary's name as a process of this host that has since died would have left it."""
    return f"{kzoo_io.TMP_PREFIX}{_dead_pid()}-{kzoo_io._host_token()}-deadbeef-{name}"


def _raw_write(path, text):
    """Writes a file as a dying writer leaves it (no temporary, no rename)."""
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


def _temporaries(folder):
    return [name for name in kzoo_io.listdir(folder) if kzoo_io.is_temporary(name)]


def _die_at_the_rename(monkeypatch, root):
    """The next file rename onto a target dies, and nothing cleans up after it."""
    def die(*args, **kwargs):
        raise _Killed("killed before the rename")

    if kzoo_io.is_local(root):
        monkeypatch.setattr(os, "replace", die)
        monkeypatch.setattr(os, "remove", lambda *args, **kwargs: None)
    else:
        monkeypatch.setattr(tf.io.gfile, "rename", die)
        monkeypatch.setattr(kzoo_io, "remove", lambda *args, **kwargs: None)


# --------------------------------------------------------------------------
# kzoo.io itself


def test_schemes():
    assert [kzoo_io.scheme(p) for p in ("/a/b", "rel", "file:///a", "gs://b/x", "RAM://x")] == [
        "", "", "file", "gs", "ram"]
    assert [kzoo_io.renames_directories(p) for p in ("/a", "file:///a", "gs://b/a", "ram://a", "s3://b/a")] == [
        True, True, False, False, False]
    assert kzoo_io.local_path("file:///tmp/x") == "/tmp/x" and kzoo_io.join("gs://b/run", "logs") == "gs://b/run/logs"
    with pytest.raises(ValueError, match="not a local path"):
        kzoo_io.local_path("gs://b/x")


def test_ram_exists_is_exact_where_gfile_matches_prefixes():
    kzoo_io.write_text("ram://kzoo-test-prefix/10/x", "1")
    assert tf.io.gfile.exists("ram://kzoo-test-prefix/1")  # TensorFlow's answer on ram://
    assert not kzoo_io.exists("ram://kzoo-test-prefix/1") and kzoo_io.exists("ram://kzoo-test-prefix/10")
    kzoo_io.rmtree("ram://kzoo-test-prefix")


def test_atomic_file_write_killed_before_its_commit(root, monkeypatch):
    path = kzoo_io.join(root, "a.txt")
    assert kzoo_io.write_text(path, "old") == path and kzoo_io.read_text(path) == "old"
    # 1. Dies while writing the temporary (the write is never finished, nothing cleans up).
    context = kzoo_io.atomic_path(path)
    with open(context.__enter__(), "w") as f:
        f.write("ha")
    _ABANDONED.append(context)
    assert kzoo_io.read_text(path) == "old"
    # 2. Dies with the temporary complete beside the target (on ram://: copied there), not renamed.
    _die_at_the_rename(monkeypatch, root)
    with pytest.raises(_Killed):
        kzoo_io.write_text(path, "new")
    monkeypatch.undo()
    assert kzoo_io.read_text(path) == "old"
    left = _temporaries(root)  # what a reader never opens: not the target's name
    assert len(left) == (2 if kzoo_io.is_local(root) else 1) and all(name.endswith("-a.txt") for name in left)
    # The next write is not blocked, and removes what dead processes left (this live one's stay).
    stale = _stale_name("a.txt")
    _raw_write(kzoo_io.join(root, stale), "half")
    assert kzoo_io.stale_temporary(stale) and not any(kzoo_io.stale_temporary(name) for name in left)
    kzoo_io.write_text(path, "new")
    assert kzoo_io.read_text(path) == "new"
    assert _temporaries(root) == left


def test_copy_and_json(root, tmp_path):
    source = tmp_path / "vocab.txt"
    source.write_text("a\nb\n")
    target = kzoo_io.copy(str(source), kzoo_io.join(root, "v.txt"))
    assert kzoo_io.read_text(kzoo_io.copy(target, kzoo_io.join(root, "w.txt"))) == "a\nb\n"
    assert kzoo_io.read_json(kzoo_io.write_json(kzoo_io.join(root, "x.json"), {"é": 1})) == {"é": 1}
    assert kzoo_io.listdir(root) == ["v.txt", "w.txt", "x.json"] and kzoo_io.getsize(target) == 4
    with pytest.raises(FileNotFoundError):
        kzoo_io.read_text(kzoo_io.join(root, "missing.txt"))
    assert kzoo_io.listdir(kzoo_io.join(root, "missing")) == []


# --------------------------------------------------------------------------
# Version folders (kzoo.export.versions on kzoo.io.write_directory)


def _saved_model(value):
    def write(path):
        module = tf.Module()
        module.v = tf.Variable(float(value))
        module.f = tf.function(lambda: module.v + 0.0, input_signature=[])
        tf.saved_model.save(module, path)

    return write


def _load_value(path):
    loaded = tf.saved_model.load(path)
    return float(loaded.f())


def test_versions_round_trip(root):
    assert versions.next_version(root) == 1 and versions.latest_version(root) is None
    first = versions.write_version(root, _saved_model(1))
    second = versions.write_version(root, _saved_model(2))
    assert (first, second) == (kzoo_io.join(root, "1"), kzoo_io.join(root, "2"))
    assert versions.committed_versions(root) == [1, 2] and versions.latest_version(root) == second
    assert _load_value(first) == 1.0 and _load_value(second) == 2.0
    assert kzoo_io.listdir(root) == ["1", "2"]
    marker = kzoo_io.read_json(kzoo_io.join(second, kzoo_io.COMMIT_MARKER))
    assert "saved_model.pb" in marker["files"] and "variables/variables.index" in marker["files"]
    with pytest.raises(ValueError, match="already exists"):
        versions.write_version(root, _saved_model(3), version=2)
    with pytest.raises(ZeroDivisionError):  # a write that fails leaves nothing behind
        versions.write_version(root, lambda path: _saved_model(3)(path) + 1 / 0)
    assert _load_value(second) == 2.0 and kzoo_io.listdir(root) == ["1", "2"] and versions.next_version(root) == 3


def test_version_killed_half_way_is_never_trusted_nor_reused(root, monkeypatch):
    versions.write_version(root, _saved_model(1))
    if kzoo_io.is_local(root):
        # Killed while writing: its temporary folder (not an integer: TF Serving ignores it) stays.
        context_writes = []

        def write_and_die(path):
            _saved_model(2)(path)
            context_writes.append(path)
            raise _Killed

        monkeypatch.setattr(shutil, "rmtree", lambda *args, **kwargs: None)  # its cleanup never runs
        with pytest.raises(_Killed):
            versions.write_version(root, write_and_die)
        monkeypatch.undo()
        [left] = _temporaries(root)
        assert kzoo_io.join(root, left) == context_writes[0]
    else:
        # Killed in the middle of copying the folder in: saved_model.pb and the marker never came.
        real_copy = tf.io.gfile.copy

        def copy(src, dst, overwrite=False):
            if dst.endswith("saved_model.pb"):
                raise _Killed
            return real_copy(src, dst, overwrite)

        monkeypatch.setattr(tf.io.gfile, "copy", copy)
        monkeypatch.setattr(kzoo_io, "_discard_partial", lambda path: None)
        with pytest.raises(_Killed):
            versions.write_version(root, _saved_model(2))
        monkeypatch.undo()
        assert kzoo_io.listdir(root) == ["1", "2"]
        partial = kzoo_io.join(root, "2")  # everything else was copied before saved_model.pb
        assert kzoo_io.listdir(partial) == ["assets", "fingerprint.pb", "variables"]
        assert kzoo_io.listdir(kzoo_io.join(partial, "variables")) == ["variables.data-00000-of-00001",
                                                                      "variables.index"]
        assert not kzoo_io.is_committed(partial)
        with pytest.raises(ValueError, match="already exists"):
            versions.write_version(root, _saved_model(2), version=2)
    # Readers see version 1 only; the half-written number is not taken again.
    assert versions.committed_versions(root) == [1] and versions.latest_version(root) == kzoo_io.join(root, "1")
    assert versions.next_version(root) == 3
    third = versions.write_version(root, _saved_model(3))
    assert third == kzoo_io.join(root, "3") and _load_value(third) == 3.0
    assert versions.committed_versions(root) == [1, 3]


def test_stale_version_temporaries_are_removed(root):
    versions.write_version(root, _saved_model(1))
    stale = kzoo_io.join(root, _stale_name("2"))
    kzoo_io.makedirs(stale)
    _raw_write(kzoo_io.join(stale, "half.pb"), "x")
    assert versions.next_version(root) == 3  # counted while it is there
    assert versions.write_version(root, _saved_model(2)) == kzoo_io.join(root, "2")
    assert kzoo_io.listdir(root) == ["1", "2"]


def test_remove_directory_uncommits_first(root):
    path = versions.write_version(root, _saved_model(1))
    kzoo_io.remove_directory(path)
    assert kzoo_io.listdir(root) == [] and versions.committed_versions(root) == []


# --------------------------------------------------------------------------
# The writers


def test_text_json_and_config_writers(root, monkeypatch):
    text = kzoo_io.join(root, "notes.md")
    labels = kzoo_io.join(root, "labels.json")
    config_path = kzoo_io.join(root, "bert_config.json")
    assert write_text_atomically(text, "# é\n") == text and kzoo_io.read_text(text) == "# é\n"
    assert write_json_atomically(labels, ["é", "b"]) == labels and kzoo_io.read_json(labels) == ["é", "b"]
    config = BertConfig(**TINY)
    assert config.to_json_file(config_path) == config_path
    assert BertConfig.from_dict(kzoo_io.read_json(config_path)) == config
    _die_at_the_rename(monkeypatch, root)
    for write in (lambda: write_json_atomically(labels, ["new"]),
                  lambda: BertConfig(**dict(TINY, hidden_size=8)).to_json_file(config_path)):
        with pytest.raises(_Killed):
            write()
    monkeypatch.undo()
    assert kzoo_io.read_json(labels) == ["é", "b"] and BertConfig.from_dict(kzoo_io.read_json(config_path)) == config
    write_json_atomically(labels, ["new"])
    BertConfig(**dict(TINY, hidden_size=8)).to_json_file(config_path)
    assert kzoo_io.read_json(labels) == ["new"] and kzoo_io.read_json(config_path)["hidden_size"] == 8


def test_save_model_and_tokenizer(ram_root, tmp_path, monkeypatch):
    root = ram_root
    model = _model()
    model.fit(_data(steps=3), verbose=0)
    save_model(model, root, labels=["a", "b"])
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(token + "\n" for token in VOCAB))
    assert save_tokenizer(str(vocab), True, root) == kzoo_io.join(root, "vocab.txt")
    assert kzoo_io.listdir(root) == ["kzoo_tokenizer.json", "labels.json", "model.keras", "vocab.txt"]
    loaded = keras.models.load_model(kzoo_io.join(root, "model.keras"))
    x = np.ones((2, 3), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert kzoo_io.read_json(kzoo_io.join(root, "labels.json")) == ["a", "b"]
    tokenizer = load_tokenizer(root)
    assert tokenizer.vocabulary == tuple(VOCAB) and tokenizer.lower_case
    assert tokenizer(tf.constant(["Play some JAZZ"])).to_list() == [[5, 6, 7]]

    def half_save(self, filepath, *args, **kwargs):  # dies half-way through writing the file
        with open(filepath, "wb") as f:
            f.write(b"PK\x03\x04 half")
        raise _Killed

    monkeypatch.setattr(keras.Model, "save", half_save)
    with pytest.raises(_Killed):
        save_model(_model(), root, labels=["x"])
    monkeypatch.undo()
    loaded = keras.models.load_model(kzoo_io.join(root, "model.keras"))  # the previous one, complete
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    save_model(_model(), root, labels=["x"])
    assert kzoo_io.read_json(kzoo_io.join(root, "labels.json")) == ["x"]
    assert not _temporaries(root)


def test_model_checkpoint_killed_while_writing_keeps_the_previous_file(ram_root, monkeypatch):
    root = ram_root
    model = _model()
    checkpoint = AtomicModelCheckpoint(kzoo_io.join(root, "epoch-{epoch:02d}.weights.h5"), save_weights_only=True)
    model.fit(_data(steps=3), epochs=1, verbose=0, callbacks=[checkpoint])
    final = kzoo_io.join(root, "epoch-01.weights.h5")
    before = kzoo_io.read_bytes(final)

    def half_save_weights(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"\x89HDF\r\n half")
        raise _Killed

    monkeypatch.setattr(keras.Model, "save_weights", half_save_weights)
    with pytest.raises(_Killed):
        checkpoint._save_model(epoch=0, batch=None, logs={})
    monkeypatch.undo()
    assert kzoo_io.read_bytes(final) == before and kzoo_io.listdir(root) == ["epoch-01.weights.h5"]
    restored = _model()
    restored.optimizer.build(restored.trainable_variables)
    restored.load_weights(final)
    assert int(restored.optimizer.iterations.numpy()) == 3
    checkpoint._save_model(epoch=1, batch=None, logs={})
    assert kzoo_io.listdir(root) == ["epoch-01.weights.h5", "epoch-02.weights.h5"]


def test_backup_killed_before_its_commit_restores_the_previous_one(ram_root, monkeypatch):
    root = ram_root
    backup_dir = kzoo_io.join(root, "backup")
    # Backups after steps 2, 3 (end of epoch 1) and 4; interrupted after step 5.
    with pytest.raises(_Preempted):
        _model().fit(_data(steps=3), epochs=3, verbose=0,
                     callbacks=[AtomicBackupAndRestore(backup_dir, save_freq=2), _Interrupt(5)])
    committed = AtomicBackupAndRestore(backup_dir).read_metadata()
    assert (committed["epoch"], committed["steps_in_epoch"], committed["iterations"]) == (1, 1, 4)
    # The next backup's weights are written, then the process dies before the metadata names them.
    def die(*args):
        raise _Killed

    monkeypatch.setattr(callbacks_lib, "_write_json", die)
    with pytest.raises(_Killed):
        _model().fit(_data(steps=3), epochs=3, verbose=0, callbacks=[AtomicBackupAndRestore(backup_dir, save_freq=2)])
    monkeypatch.undo()
    assert len(kzoo_io.listdir(backup_dir)) == 3  # the committed pair and the uncommitted weights
    assert AtomicBackupAndRestore(backup_dir).read_metadata() == committed
    # The same command again resumes from the committed backup and ends where an uninterrupted run does;
    # it then deletes the backup, the metadata first: killed in the middle of that, nothing is resumed.
    model, backup = _model(), AtomicBackupAndRestore(backup_dir, save_freq=2)
    monkeypatch.setattr(kzoo_io, "rmtree", die)
    with pytest.raises(_Killed):
        model.fit(_data(steps=3), epochs=3, verbose=0, callbacks=[backup])
    monkeypatch.undo()
    assert backup.restored["restored_iterations"] == 4 and int(model.optimizer.iterations.numpy()) == 9
    assert AtomicBackupAndRestore(backup_dir).read_metadata() is None


def _word_embeddings(encoder):
    return official_arrays(encoder)["bert/embeddings/word_embeddings"]


def _read_official(prefix):
    """A reader of official checkpoints that works on ram:// too (`tf.train.load_checkpoint`
    takes a ram:// prefix for a folder: ram:// matches folder names by string prefix)."""
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    return reader.get_tensor("bert/embeddings/word_embeddings")


def test_official_checkpoint_killed_between_its_renames(root, monkeypatch):
    prefix = kzoo_io.join(root, "bert_model.ckpt")
    keras.utils.set_random_seed(1)
    first, second = bert_encoder(BertConfig(**TINY)), bert_encoder(BertConfig(**TINY))
    assert save_official_bert(first, prefix) == prefix
    assert tf.train.latest_checkpoint(root) == prefix
    want = _word_embeddings(first)
    np.testing.assert_array_equal(_read_official(prefix), want)
    if kzoo_io.is_local(root):  # kzoo's own reader (kzoo.checkpoints' readers use `os`: local only)
        load_official_bert(second, root, strict=True)
        np.testing.assert_array_equal(_word_embeddings(second), want)
        second = bert_encoder(BertConfig(**TINY))
    # Dies after the new data file replaced the old one, before the new index is in place.
    real_rename, calls = kzoo_io.rename_file, []

    def rename_then_die(src, dst):
        calls.append(dst)
        if len(calls) > 1:
            raise _Killed
        real_rename(src, dst)

    monkeypatch.setattr(kzoo_io, "rename_file", rename_then_die)
    monkeypatch.setattr(kzoo_io, "rmtree", lambda path: None)
    with pytest.raises(_Killed):
        save_official_bert(second, prefix)
    monkeypatch.undo()
    # No index at the prefix: no reader takes the new data with the old index, or anything else.
    assert not kzoo_io.exists(prefix + ".index") and tf.train.latest_checkpoint(root) is None
    if kzoo_io.is_local(root):
        with pytest.raises(ValueError, match="expected one TF checkpoint|no TF checkpoint"):
            load_official_bert(second, root)
    assert len(_temporaries(root)) == 1  # the dead write's folder, which holds the rest
    save_official_bert(second, prefix)
    assert tf.train.latest_checkpoint(root) == prefix
    np.testing.assert_array_equal(_read_official(prefix), _word_embeddings(second))


def test_hub_export_removes_its_half_pair_when_the_second_model_fails(monkeypatch):
    from kzoo.export import export_hub_encoder
    from kzoo.export import hub

    root = f"ram://kzoo-test-hub-{uuid.uuid4().hex[:8]}"
    tokenizer = BertTokenizer(vocabulary=VOCAB)
    encoder = bert_encoder(BertConfig(**TINY))

    def tiny_module(*args):  # the real modules take 10 s to trace; their writing is the same
        module = tf.Module()
        module.v = tf.Variable(1.0)
        module.f = tf.function(lambda: module.v + 0.0, input_signature=[])
        return module, {"serving_default": module.f.get_concrete_function()}

    real_save, saves = tf.saved_model.save, []

    def second_fails(obj, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 2:
            raise OSError("disk full")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(hub, "_preprocess_module", tiny_module)
    monkeypatch.setattr(hub, "_encoder_module", tiny_module)
    monkeypatch.setattr(tf.saved_model, "save", second_fails)
    with pytest.raises(OSError, match="disk full"):
        export_hub_encoder(encoder, tokenizer, root, seq_length=8)
    monkeypatch.setattr(tf.saved_model, "save", real_save)
    assert len(saves) == 2  # the preprocessing model was committed, then removed
    assert kzoo_io.listdir(kzoo_io.join(root, "preprocess")) == []
    assert versions.committed_versions(kzoo_io.join(root, "encoder")) == []
    exported = export_hub_encoder(encoder, tokenizer, root, seq_length=8)
    assert exported == (kzoo_io.join(root, "preprocess", "1"), kzoo_io.join(root, "encoder", "1"))
    for path in exported:
        loaded = tf.saved_model.load(path)
        assert float(loaded.f()) == 1.0
    kzoo_io.rmtree(root)


# --------------------------------------------------------------------------
# End to end: a tiny classifier trained and exported with everything on ram://


def test_fit_and_export_on_ram():
    from kzoo.export import export_classifier

    base = f"ram://kzoo-test-run-{uuid.uuid4().hex[:8]}"
    model_dir, export_root = kzoo_io.join(base, "run"), kzoo_io.join(base, "savedmodels", "intents")
    tokenizer = BertTokenizer(vocabulary=VOCAB)
    keras.utils.set_random_seed(0)
    model = bert_classifier(BertConfig(**TINY), num_classes=2)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    features = {"input_word_ids": rng.integers(5, len(VOCAB), (8, 6)).astype("int32"),
                "input_mask": np.ones((8, 6), "int32"), "input_type_ids": np.zeros((8, 6), "int32")}
    dataset = tf.data.Dataset.from_tensor_slices((features, rng.integers(0, 2, 8).astype("int32"))).batch(4)
    callbacks = standard_callbacks(model_dir, backup_steps=1)
    callbacks[-1].delete_checkpoint = False  # keep the last backup to look at
    model.fit(dataset, epochs=2, verbose=0, callbacks=callbacks)

    assert kzoo_io.listdir(kzoo_io.join(model_dir, "checkpoints")) == ["epoch-01.weights.h5", "epoch-02.weights.h5"]
    assert any(name.startswith("events.out.tfevents") for name in kzoo_io.listdir(kzoo_io.join(model_dir, "logs", "train")))
    metadata = kzoo_io.read_json(kzoo_io.join(model_dir, "backup", "training_metadata.json"))
    assert kzoo_io.listdir(kzoo_io.join(model_dir, "backup")) == [metadata["weights"], "training_metadata.json"]
    assert metadata["iterations"] == 4
    restored = bert_classifier(BertConfig(**TINY), num_classes=2)
    restored.load_weights(kzoo_io.join(model_dir, "checkpoints", "epoch-02.weights.h5"))
    np.testing.assert_allclose(restored.predict(features, verbose=0), model.predict(features, verbose=0), atol=1e-5)

    path = export_classifier(model, tokenizer, ["alarm", "music"], export_root, seq_length=8,
                             warmup_texts=["play some jazz"])
    assert path == kzoo_io.join(export_root, "1") and versions.committed_versions(export_root) == [1]
    assert "tf_serving_warmup_requests" in kzoo_io.listdir(kzoo_io.join(path, "assets.extra"))
    loaded = tf.saved_model.load(path)
    out = loaded.signatures["serving_default"](text=tf.constant(["play some jazz", "wake me up"]))
    assert out["probabilities"].shape == (2, 2) and set(out["labels"].numpy()) <= {b"alarm", b"music"}
    kzoo_io.rmtree(base)
