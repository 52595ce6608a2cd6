"""Pieces every fine-tuning workflow shares: callbacks and atomic saves.

`model_dir` may be local or on any `tf.io.gfile` file system (`gs://bucket/run`): every
write goes through `kzoo.io`, so a process killed while writing never leaves a half-written
file under its final name, there as on local disk."""

import os

import keras

from kzoo import io as kzoo_io
from kzoo.training.callbacks import AtomicBackupAndRestore, AtomicModelCheckpoint


def standard_callbacks(model_dir, backup_steps=0, backup_dir=None):
    """The callbacks every workflow trains with, in this order:

    * `keras.callbacks.TensorBoard` logging to `<model_dir>/logs`;
    * per-epoch weight checkpoints `<model_dir>/checkpoints/epoch-NN.weights.h5`
      (`kzoo.training.callbacks.AtomicModelCheckpoint`: each written to a
      temporary file in that folder and renamed into place);
    * a backup of the training state in `<model_dir>/backup`
      (`kzoo.training.callbacks.AtomicBackupAndRestore`), written at the end
      of every epoch and, with `backup_steps` > 0, every `backup_steps`
      optimizer steps. A run killed (even with SIGKILL) and started again
      with the same command restores it in `on_train_begin`, resumes in the
      middle of the epoch if need be (the batches of that epoch trained
      before the backup are skipped) and ends with the same number of
      optimizer steps as an uninterrupted run. Data order is not replayed:
      the resumed epoch's remaining batches come from a fresh pass (a fresh
      shuffle) over the data. The backup is deleted when `fit` completes.

    Keep these after any other callbacks in the `fit` list, so that the
    backup at the end of an epoch follows everything the epoch wrote.

    Args:
        model_dir: the run's output folder, local or on any `tf.io.gfile` file
            system (`gs://bucket/run`; TensorBoard writes there through
            `tf.io.gfile` too).
        backup_steps: 0: back up at the end of every epoch only; N > 0: also
            every N optimizer steps (training batches; the most work a kill
            can lose).
        backup_dir: where the backup lives (default `<model_dir>/backup`;
            multi-worker runs point every worker at the chief's).
    """
    backup_steps = int(backup_steps or 0)
    if backup_steps < 0:
        raise ValueError(f"backup_steps must be >= 0, got {backup_steps}")
    return [
        keras.callbacks.TensorBoard(kzoo_io.join(model_dir, "logs")),
        AtomicModelCheckpoint(kzoo_io.join(model_dir, "checkpoints", "epoch-{epoch:02d}.weights.h5"),
                              save_weights_only=True),
        AtomicBackupAndRestore(backup_dir or kzoo_io.join(model_dir, "backup"), save_freq=backup_steps or "epoch"),
    ]


def write_text_atomically(path, text):
    """Writes `text` (UTF-8) to `path` atomically (`kzoo.io.write_text`: a temporary file, then a
    rename onto `path`; any `tf.io.gfile` file system). Returns `path`."""
    return kzoo_io.write_text(path, text)


def write_json_atomically(path, value):
    """Writes `value` as indented JSON to `path` atomically (`kzoo.io.write_json`). Returns `path`."""
    return kzoo_io.write_json(path, value, indent=2, ensure_ascii=False)


def save_model(model, model_dir, **json_files):
    """Writes `<model_dir>/model.keras` and `<model_dir>/<name>.json` for each
    keyword (e.g. `labels=[...]`), each through a temporary file and a rename
    (`kzoo.io.atomic_path`), so a reader never finds a half-written file.
    `model_dir` may be on any `tf.io.gfile` file system."""
    kzoo_io.makedirs(model_dir)
    with kzoo_io.atomic_path(kzoo_io.join(model_dir, "model.keras")) as tmp:
        model.save(tmp)
    for name, value in json_files.items():
        write_json_atomically(kzoo_io.join(model_dir, f"{name}.json"), value)


def save_tokenizer(tokenizer, model_dir, *legacy):
    """Saves the tokenizer beside a model, so a model_dir is enough to tokenise for the saved
    model (ensembles, teachers, later exports): its files (vocab.txt, spiece.model,
    sentencepiece.bpe.model, or vocab.json + merges.txt) and `<model_dir>/kzoo_tokenizer.json`
    (`kzoo.text.saving.write_tokenizer`), each written atomically; `model_dir` may be on any
    `tf.io.gfile` file system. Returns the path of the tokenizer's main file.

    `save_tokenizer(vocab_file, lower_case, model_dir)`, kzoo's earlier WordPiece-only form,
    still works: it copies the vocabulary to `<model_dir>/vocab.txt`."""
    if legacy:
        vocab_file, lower_case, model_dir = tokenizer, model_dir, legacy[0]
        target = kzoo_io.join(model_dir, "vocab.txt")
        if not _same_file(vocab_file, target):
            kzoo_io.copy(vocab_file, target)
        write_json_atomically(kzoo_io.join(model_dir, "kzoo_tokenizer.json"),
                              {"vocab_file": "vocab.txt", "lower_case": bool(lower_case)})
        return target
    from kzoo.text.saving import write_tokenizer

    record = kzoo_io.read_json(write_tokenizer(tokenizer, model_dir))
    return kzoo_io.join(model_dir, record.get("model_file") or record["vocab_file"])


def _same_file(a, b):
    if kzoo_io.is_local(a) and kzoo_io.is_local(b):
        return os.path.abspath(kzoo_io.local_path(a)) == os.path.abspath(kzoo_io.local_path(b))
    return str(a).rstrip("/") == str(b).rstrip("/")


def load_tokenizer(model_dir):
    """The tokenizer saved beside a model by `save_tokenizer` (`kzoo.text.saving.read_tokenizer`;
    `model_dir` local or on any `tf.io.gfile` file system)."""
    from kzoo.text.saving import RECORD, read_tokenizer, record_path

    if record_path(model_dir) is None:
        raise ValueError(f"{kzoo_io.join(model_dir, RECORD)} not found: {model_dir} was not written by a kzoo "
                         "fine-tuning run")
    return read_tokenizer(model_dir)
