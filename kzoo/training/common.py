"""Pieces every fine-tuning workflow shares: callbacks and atomic saves."""

import json
import os
import shutil

import keras

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
        model_dir: the run's output folder.
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
        keras.callbacks.TensorBoard(os.path.join(model_dir, "logs")),
        AtomicModelCheckpoint(os.path.join(model_dir, "checkpoints", "epoch-{epoch:02d}.weights.h5"),
                              save_weights_only=True),
        AtomicBackupAndRestore(backup_dir or os.path.join(model_dir, "backup"), save_freq=backup_steps or "epoch"),
    ]


def write_text_atomically(path, text):
    """Writes `text` to a temporary file beside `path`, then renames it into place."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def write_json_atomically(path, value):
    """Writes JSON to a temporary file beside `path`, then renames it into place."""
    return write_text_atomically(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def save_model(model, model_dir, **json_files):
    """Writes `<model_dir>/model.keras` and `<model_dir>/<name>.json` for each
    keyword (e.g. `labels=[...]`), each via a temporary file and a rename, so
    a reader never finds a half-written file."""
    os.makedirs(model_dir, exist_ok=True)
    tmp = os.path.join(model_dir, f".tmp-{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, os.path.join(model_dir, "model.keras"))
    for name, value in json_files.items():
        write_json_atomically(os.path.join(model_dir, f"{name}.json"), value)


def save_tokenizer(vocab_file, lower_case, model_dir):
    """Copies the vocabulary to `<model_dir>/vocab.txt` and writes
    `<model_dir>/tokenizer.json` ({"vocab_file": "vocab.txt", "lower_case": ...}),
    so a model_dir is enough to tokenise for the saved model (ensembles,
    teachers, later exports)."""
    target = os.path.join(model_dir, "vocab.txt")
    if os.path.abspath(vocab_file) != os.path.abspath(target):
        tmp = f"{target}.tmp-{os.getpid()}"
        shutil.copyfile(vocab_file, tmp)
        os.replace(tmp, target)
    write_json_atomically(os.path.join(model_dir, "tokenizer.json"),
                          {"vocab_file": "vocab.txt", "lower_case": bool(lower_case)})
    return target


def load_tokenizer(model_dir):
    """The `kzoo.text.BertTokenizer` saved beside a model by `save_tokenizer`."""
    from kzoo.text import BertTokenizer

    path = os.path.join(model_dir, "tokenizer.json")
    if not os.path.exists(path):
        raise ValueError(f"{path} not found: {model_dir} was not written by a kzoo fine-tuning run")
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    return BertTokenizer(os.path.join(model_dir, spec["vocab_file"]), lower_case=spec["lower_case"])
