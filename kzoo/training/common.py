"""Pieces every fine-tuning workflow shares: callbacks and atomic saves."""

import json
import os
import shutil

import keras


def standard_callbacks(model_dir):
    """TensorBoard logs in `<model_dir>/logs` and per-epoch weight checkpoints
    in `<model_dir>/checkpoints/epoch-NN.weights.h5`."""
    return [
        keras.callbacks.TensorBoard(os.path.join(model_dir, "logs")),
        keras.callbacks.ModelCheckpoint(os.path.join(model_dir, "checkpoints", "epoch-{epoch:02d}.weights.h5"),
                                        save_weights_only=True),
    ]


def write_json_atomically(path, value):
    """Writes JSON to a temporary file beside `path`, then renames it into place."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)
    return path


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
