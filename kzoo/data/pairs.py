"""Text pairs for dual encoders: (anchor, positive[, hard negative]) from TSV, CSV or JSONL, and
batches without repeated texts.

`read_pairs` reads the columns (header names / JSON keys) `anchor`, `positive` and optionally
`negative` (other names with the column arguments). With the default names, a TSV or CSV file
whose first row does not name the anchor column is read as header-less when it has exactly two
columns (anchor, positive) or three (with a negative column asked for); with other names the
header must name them. Errors name the file and line, as the
classification readers' do (`kzoo.data.tasks`).

`no_duplicate_batches` orders the pairs into batches in which no text appears twice: an
in-batch negative equal to an anchor's own positive (several SQuAD questions share a paragraph)
would be a false negative (sentence-transformers' `NoDuplicatesBatchSampler` does the same).
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from kzoo.data.tasks import TaskSpec, _Rows, _read_delimited, _read_jsonl

FORMATS = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


@dataclasses.dataclass
class Pairs:
    anchors: list
    positives: list
    negatives: list  # None without a negative column
    lines: list
    source: str

    def __len__(self):
        return len(self.anchors)


def read_pairs(path, format=None, anchor_column="anchor", positive_column="positive", negative_column=None,
               skip_malformed=False):
    """Reads (anchor, positive[, negative]) rows; see the module docstring."""
    path = os.fspath(path)
    if format is None:
        format = FORMATS.get(os.path.splitext(path)[1].lower())
        if format is None:
            raise ValueError(f"{path}: cannot tell the format from the extension; say tsv, csv or jsonl")
    if format not in ("tsv", "csv", "jsonl"):
        raise ValueError(f"{path}: format must be tsv, csv or jsonl, got {format!r}")
    columns = (anchor_column, positive_column) + ((negative_column,) if negative_column else ())
    if (anchor_column, positive_column) != ("anchor", "positive"):
        columns = None  # columns named by the caller: the file must have a header that names them
    spec = TaskSpec(format, text=anchor_column, text_b=positive_column, label=negative_column, columns=columns)
    rows = _Rows(path, skip_malformed)
    (_read_delimited if format != "jsonl" else _read_jsonl)(path, spec, rows, labelled=negative_column is not None)
    examples = rows.finish(spec, labelled=negative_column is not None)
    return Pairs(examples.texts, examples.texts_b, examples.labels, examples.lines, path)


def no_duplicate_batches(texts_per_pair, batch_size, rng):
    """A seeded order of pair indices, cut into full batches of `batch_size` in which no text
    (any column of `texts_per_pair`, a list of tuples) appears twice; pairs that fit no batch
    in this pass wait for the next one, and a last incomplete batch is dropped. Returns
    int64 [num_batches * batch_size]."""
    order = list(rng.permutation(len(texts_per_pair)))
    batches = []
    while len(order) >= batch_size:
        batch, seen, left = [], set(), []
        for i in order:
            texts = set(texts_per_pair[i])
            if len(batch) < batch_size and not texts & seen and len(texts) == len(texts_per_pair[i]):
                batch.append(i)
                seen |= texts
            else:
                left.append(i)
        if len(batch) < batch_size:
            break
        batches.append(batch)
        order = left
    return np.asarray([i for batch in batches for i in batch], np.int64)


def pair_dataset(anchors, positives, negatives, tokenizer, packer, batch_size, order=None):
    """Batches of {"anchor": features, "positive": features[, "negative": features]}, each side
    packed to its own longest text in the batch; `order` (from `no_duplicate_batches`) picks
    and orders the pairs, else they come as they are, with the last partial batch dropped."""
    columns = {"anchor": anchors, "positive": positives}
    if negatives is not None:
        columns["negative"] = negatives
    if order is not None:
        columns = {k: [v[i] for i in order] for k, v in columns.items()}
    ds = tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in columns.items()})
    ds = ds.batch(batch_size, drop_remainder=True)
    return ds.map(lambda batch: {k: packer(tokenizer(v)) for k, v in batch.items()},
                  num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
