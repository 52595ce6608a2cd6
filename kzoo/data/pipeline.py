"""tf.data pipelines: raw text in, packed BERT inputs and labels out."""

import numpy as np
import tensorflow as tf


def token_lengths(texts, tokenizer, chunk=4096):
    """WordPiece counts of `texts` (one batched tokenizer call per chunk)."""
    lengths = [tokenizer(tf.constant(texts[i:i + chunk])).row_lengths().numpy() for i in range(0, len(texts), chunk)]
    return np.concatenate(lengths) if lengths else np.zeros([0], np.int64)


def num_batches(lengths, batch_size, bucket_boundaries=None, drop_remainder=False):
    """Batches per epoch of `classification_dataset` (learning-rate schedules
    need the exact step count; bucketing adds one partial batch per bucket).

    Args:
        lengths: wordpiece length of each example (`token_lengths`).
        batch_size, bucket_boundaries, drop_remainder: as the dataset's.
    """
    lengths = np.asarray(lengths)
    # Bucket i holds boundaries[i-1] <= length < boundaries[i], as tf.data's.
    buckets = np.searchsorted(np.asarray(bucket_boundaries or [], np.int64), lengths, side="right")
    counts = np.bincount(buckets) if len(lengths) else np.zeros([1], np.int64)
    per_bucket = counts // batch_size if drop_remainder else -(-counts // batch_size)
    return int(per_bucket.sum())


def classification_dataset(texts, labels, tokenizer, packer, batch_size, texts_b=None, shuffle=False, seed=None,
                           drop_remainder=False, bucket_boundaries=None, lengths=None):
    """Batches of ({input_word_ids, input_mask, input_type_ids}, label ids).

    Tokenisation runs in the pipeline, once per batch (vectorised) and in
    parallel with training. With a `dynamic_length` packer each batch is
    padded only to its own longest example; `bucket_boundaries` (wordpiece
    lengths) further groups examples of similar length into the same batch,
    which cuts padding on real length distributions. Keep bucketing for
    training: it reorders examples.

    Args:
        texts, texts_b: lists of str (texts_b for pair tasks).
        labels: int label ids, a dict of per-example arrays (for models with
            several outputs), or None for prediction (features only).
        tokenizer: a `kzoo.text.BertTokenizer`.
        packer: a `kzoo.text.BertPacker` (fixed length for static shapes).
        batch_size: examples per batch.
        shuffle: reshuffle every epoch (seeded by `seed`).
        drop_remainder: all batches full (static shapes, TPU).
        bucket_boundaries: increasing wordpiece lengths splitting the buckets.
        lengths: precomputed `token_lengths` (summed over pair segments) for
            bucketing; computed when not given.
    """
    columns = (list(texts),) if texts_b is None else (list(texts), list(texts_b))
    if bucket_boundaries and lengths is None:
        lengths = sum(token_lengths(list(c), tokenizer) for c in columns)
    if labels is not None:
        # int label ids, or a dict of per-example arrays (e.g. label ids and a teacher's logits)
        labels = (tf.nest.map_structure(tf.constant, labels) if isinstance(labels, dict)
                  else tf.constant(labels, tf.int32))
    elements = (columns,) if labels is None else (columns, labels)
    if bucket_boundaries:
        elements = elements + (tf.constant(lengths, tf.int32),)
    ds = tf.data.Dataset.from_tensor_slices(elements)
    if shuffle:
        ds = ds.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
    if bucket_boundaries:
        ds = ds.bucket_by_sequence_length(
            element_length_func=lambda *e: e[-1],
            bucket_boundaries=list(bucket_boundaries),
            bucket_batch_sizes=[batch_size] * (len(bucket_boundaries) + 1),
            drop_remainder=drop_remainder,
        )
        ds = ds.map(lambda *e: e[:-1])
    else:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def pack(columns, *label):
        segments = [tokenizer(c) for c in columns]
        features = packer(segments if len(segments) > 1 else segments[0])
        if drop_remainder:  # the ragged tokenizer hides the (now fixed) batch size: restore it
            features, label = tf.nest.map_structure(
                lambda t: tf.ensure_shape(t, [batch_size] + t.shape.as_list()[1:]), (features, label))
        return (features,) + tuple(label)

    ds = ds.map(pack, num_parallel_calls=tf.data.AUTOTUNE)
    if labels is None:
        ds = ds.map(lambda features: features)
    # Bucketing hides the number of batches from tf.data; stating it (checked as the data flows) gives Keras'
    # progress bar its total and ETA from the first epoch.
    count = num_batches(lengths if bucket_boundaries else np.zeros(len(columns[0])), batch_size, bucket_boundaries,
                        drop_remainder)
    return with_num_batches(ds, count).prefetch(tf.data.AUTOTUNE)


def with_num_batches(dataset, count):
    """`dataset` with its number of batches per pass stated, when tf.data cannot infer it (bucketing,
    TFRecords): Keras then shows a progress bar with a total and an ETA from the first epoch instead of
    `1/Unknown` and a "ran out of data" warning. A pass that yields another number of batches fails with
    an error naming both numbers; an infinite (repeated) dataset is returned as it is."""
    if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        return dataset
    return dataset.apply(tf.data.experimental.assert_cardinality(int(count)))
