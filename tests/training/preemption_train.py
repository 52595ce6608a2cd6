"""A tiny kzoo classifier trained with `standard_callbacks`, for
tests/training/test_preemption.py, which kills it and starts it again.

    python tests/training/preemption_train.py MODEL_DIR --epochs=3 --steps_per_epoch=6 --backup_steps=2

Appends one JSON line per event to `<MODEL_DIR>/progress.jsonl` (flushed and
fsynced, written after the backup callbacks of the same batch have run):
`{"event": "begin", "pid", "iterations"}` at `on_train_begin` (after any
restore), `{"event": "batch", "pid", "epoch", "batch", "iterations"}` after
every batch, and writes `<MODEL_DIR>/result.json` with the final
`optimizer.iterations` when `fit` returns. `--sleep` seconds are slept after
every batch, so that a test has time to kill the process mid-epoch.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kzoo import models  # noqa: E402
from kzoo.configs import BertConfig  # noqa: E402
from kzoo.training.common import standard_callbacks, write_json_atomically  # noqa: E402

BATCH_SIZE = 4
SEQ_LENGTH = 8


class Progress(keras.callbacks.Callback):
    def __init__(self, path, sleep):
        super().__init__()
        self.path, self.sleep, self.epoch = path, sleep, None

    def _write(self, **record):
        record.update(pid=os.getpid(), iterations=int(self.model.optimizer.iterations.numpy()))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def on_train_begin(self, logs=None):
        self._write(event="begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._write(event="batch", epoch=self.epoch, batch=batch, trained=bool(logs))
        time.sleep(self.sleep)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps_per_epoch", type=int, default=6)
    parser.add_argument("--backup_steps", type=int, default=2)
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()

    keras.utils.set_random_seed(1)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16)
    model = models.bert_classifier(config, num_classes=3)
    n = args.steps_per_epoch * BATCH_SIZE
    rng = np.random.default_rng(0)
    features = {"input_word_ids": rng.integers(1, 64, (n, SEQ_LENGTH)).astype("int32"),
                "input_mask": np.ones((n, SEQ_LENGTH), "int32"),
                "input_type_ids": np.zeros((n, SEQ_LENGTH), "int32")}
    labels = rng.integers(0, 3, n).astype("int32")
    # Reshuffled every epoch, as kzoo's training datasets are.
    dataset = (tf.data.Dataset.from_tensor_slices((features, labels))
               .shuffle(n, seed=1, reshuffle_each_iteration=True).batch(BATCH_SIZE))
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    os.makedirs(args.model_dir, exist_ok=True)
    callbacks = standard_callbacks(args.model_dir, backup_steps=args.backup_steps) + [
        Progress(os.path.join(args.model_dir, "progress.jsonl"), args.sleep)]
    history = model.fit(dataset, epochs=args.epochs, callbacks=callbacks, shuffle=False, verbose=0)
    write_json_atomically(os.path.join(args.model_dir, "result.json"),
                          {"iterations": int(model.optimizer.iterations.numpy()),
                           "epochs_trained": len(history.history["loss"])})


if __name__ == "__main__":
    main()
