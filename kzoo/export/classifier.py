"""Export a classifier as a SavedModel that takes raw text."""

import os

import tensorflow as tf

from kzoo.export.archive import PACKED_FEATURES, export_archive, traced_once
from kzoo.export.precision import serving_copy
from kzoo.export.versions import write_version
from kzoo.export.warmup import MAX_WARMUP_RECORDS, write_warmup_requests
from kzoo.text import BertPacker


def export_classifier(model, tokenizer, label_names, export_root, seq_length=128, version=None, pair=False,
                      warmup_texts=None, warmup_texts_b=None, model_name=None, compute_dtype=None,
                      xla_lengths=None):
    """Writes `export_root/<version>/`, a SavedModel TF Serving loads as-is.

    Signatures:
      - `serving_default`: `text` (and `text_b` when `pair`) tf.string [batch]
        -> `probabilities` float32 [batch, classes], `label_ids` int32 [batch],
        `labels` tf.string [batch]. WordPiece and packing run in the graph
        (tensorflow-text ops, which stock TF Serving links), each batch padded
        to its longest example, at most `seq_length`.
      - `serve_packed`: int32 `input_word_ids`, `input_mask`, `input_type_ids`
        [batch, seq] -> the same outputs.

    Bad input through `serving_default` has defined behaviour (`tests/export/test_serving.py`):
      - an empty string is `[CLS] [SEP]`: a valid prediction;
      - a long string (100k characters) is truncated to `seq_length` tokens: a valid prediction
        (a batch of 8 such strings takes about half a second on one CPU core); a word longer
        than the tokenizer's `max_input_chars_per_word` is one `[UNK]`;
      - invalid UTF-8 bytes are dropped, as the official BERT tokenizer's
        `convert_to_unicode(errors="ignore")` does: a valid prediction from the valid rest;
      - a batch of zero gives empty outputs ([0, classes], [0], [0]);
      - with `pair`, `text` and `text_b` of different lengths: `InvalidArgumentError` (without
        the check, tf-text's `combine_segments` reads past the shorter batch).
    `serve_packed` raises `InvalidArgumentError` on inputs of different shapes or a zero-length
    sequence in a non-empty batch (a batch of zero gives empty outputs); out-of-vocabulary ids
    fail in the embedding lookup, also with `InvalidArgumentError`.

    Warm-up: with `warmup_texts`, the version folder also holds
    `assets.extra/tf_serving_warmup_requests` (see `kzoo.export.warmup`): one `serving_default`
    PredictRequest per text, then one with all of them as a batch; TF Serving replays them
    before it serves the version. The file is written before the version folder is renamed
    into place.

    Args:
        model: a classifier `keras.Model` (logits out).
        tokenizer: the `kzoo.text.BertTokenizer` used in training.
        label_names: class names, index = label id.
        export_root: the model's base path (e.g. `savedmodels/intents`).
        seq_length: longest packed input.
        version: integer version; default: the next free one.
        pair: whether the model classifies text pairs.
        warmup_texts: optional example texts (str or bytes) for the warm-up requests.
        warmup_texts_b: with `pair`, the second texts, as many as `warmup_texts`.
        model_name: `model_spec.name` of the warm-up requests; default: the base name of
            `export_root` (the name TF Serving serves a base path as, by convention).
        compute_dtype: None (the model as it computes), "float32" or "bfloat16": the encoder's
            projections multiply in bfloat16, everything else in float32, outputs unchanged in
            dtype (`kzoo.export.precision.serving_copy`; the SavedModel stores those kernels in
            bfloat16). For CPUs with AVX512-BF16 / AMX, TPUs and recent GPUs.
        xla_lengths: None, or increasing sequence lengths (e.g. (16, 32, 64, 128)): the model
            then runs as one XLA-compiled function (`jit_compile`), each batch padded to the
            shortest of these lengths that holds it (the last must be at least `seq_length`) and
            to a power-of-two batch size, so the compiled programs stay a fixed, small set
            (lengths x log2 batch sizes) whatever the traffic. Outputs equal the plain export's
            within float rounding. TF Serving runs it only with
            `--xla_cpu_compilation_enabled=true` (an experimental flag); `tf.saved_model.load`
            runs it as is.

    Returns:
        The path of the version folder written.
    """
    label_names = [str(name) for name in label_names]
    if len(label_names) != model.output_shape[-1]:
        raise ValueError(f"{len(label_names)} label names for a model with {model.output_shape[-1]} outputs")
    warmup = _warmup_requests(warmup_texts, warmup_texts_b, pair)
    if xla_lengths is not None:
        xla_lengths = _checked_xla_lengths(xla_lengths, seq_length)  # before the (bfloat16) copy is made
    # Classes read real positions only: the encoder skips padding (not under XLA, whose shapes are static).
    model = serving_copy(model, compute_dtype, real_tokens_only=not xla_lengths)
    run_model = _xla_runner(model, xla_lengths) if xla_lengths else traced_once(model)
    if model_name is None:
        model_name = os.path.basename(os.path.normpath(os.fspath(export_root)))
    packer = BertPacker.from_tokenizer(tokenizer, seq_length, dynamic_length=True)
    labels = tf.constant(label_names)

    def predict(inputs):
        logits = run_model(inputs)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        label_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"probabilities": probabilities, "label_ids": label_ids, "labels": tf.gather(labels, label_ids)}

    def predict_packed(features):
        return predict(pad_empty_batch(features))

    text_spec = tf.TensorSpec([None], tf.string, name="text")
    if pair:
        def serve_text(text, text_b):
            check = tf.debugging.assert_equal(
                tf.size(text), tf.size(text_b),
                message="serving_default: `text` and `text_b` must have the same batch size")
            with tf.control_dependencies([check]):
                text, text_b = tf.identity(text), tf.identity(text_b)
            return predict_packed(packer([tokenizer(text), tokenizer(text_b)]))

        text_signature = [text_spec, tf.TensorSpec([None], tf.string, name="text_b")]
    else:
        def serve_text(text):
            return predict_packed(packer(tokenizer(text)))

        text_signature = [text_spec]

    def serve_packed(input_word_ids, input_mask, input_type_ids):
        return predict_packed(checked_packed(input_word_ids, input_mask, input_type_ids))

    packed_signature = list(PACKED_FEATURES.values())  # input_word_ids, input_mask, input_type_ids

    def write(path):
        archive = export_archive(model, *tokenizer.resources)  # each variable stored once
        archive.add_endpoint("serving_default", serve_text, input_signature=text_signature)
        archive.add_endpoint("serve_packed", serve_packed, input_signature=packed_signature)
        archive.write_out(path, verbose=False)
        if warmup:
            write_warmup_requests(path, model_name, warmup, signature_name="serving_default")

    return write_version(export_root, write, version)


def _checked_xla_lengths(lengths, seq_length):
    lengths = [int(n) for n in lengths]
    if not lengths or lengths != sorted(set(lengths)) or lengths[0] < 2:
        raise ValueError(f"xla_lengths must be increasing lengths >= 2, got {lengths}")
    if lengths[-1] < seq_length:
        raise ValueError(f"the last of xla_lengths ({lengths[-1]}) must be at least seq_length ({seq_length})")
    return lengths


def _xla_runner(model, lengths):
    """`model(features)` through one jit-compiled function on inputs padded to a length of
    `lengths` and a power-of-two batch (see `export_classifier(xla_lengths=)`)."""
    buckets = tf.constant(lengths, tf.int32)
    powers = tf.constant([2 ** k for k in range(31)], tf.int32)
    compiled = tf.function(lambda features: model(features, training=False), jit_compile=True, autograph=False)

    def run(features):
        shape = tf.shape(features["input_word_ids"])
        batch, width = shape[0], shape[1]
        bucket = tf.gather(buckets, tf.reduce_sum(tf.cast(buckets < width, tf.int32)))
        padded_batch = tf.gather(powers, tf.reduce_sum(tf.cast(powers < batch, tf.int32)))
        padded = {name: tf.pad(f, [[0, padded_batch - batch], [0, bucket - width]])
                  for name, f in features.items()}
        return compiled(padded)[:batch]

    return run


def pad_empty_batch(features):
    """A batch of zero packs to width 0, which the encoder's [CLS] slice rejects; width 2 (the
    least a real example packs to) makes it an empty batch of outputs. Non-empty batches are
    left as they are."""
    shape = tf.shape(features["input_word_ids"])
    padding = [[0, 0], [0, tf.where(tf.equal(shape[0], 0), tf.maximum(2 - shape[1], 0), 0)]]
    return {name: tf.pad(feature, padding) for name, feature in features.items()}


def checked_packed(input_word_ids, input_mask, input_type_ids):
    """`serve_packed`'s inputs as a feature dict, after checking that the three have one shape and
    that a non-empty batch has at least one token per row (InvalidArgumentError otherwise)."""
    shape = tf.shape(input_word_ids)
    checks = [
        tf.debugging.assert_equal(
            tf.shape(other), shape,
            message="serve_packed: input_word_ids, input_mask and input_type_ids must have the same shape")
        for other in (input_mask, input_type_ids)
    ]
    checks.append(tf.debugging.assert_equal(
        tf.logical_or(tf.equal(shape[0], 0), shape[1] > 0), True,
        message="serve_packed: a non-empty batch needs sequences of at least one token ([CLS])"))
    with tf.control_dependencies(checks):
        return {"input_word_ids": tf.identity(input_word_ids), "input_mask": tf.identity(input_mask),
                "input_type_ids": tf.identity(input_type_ids)}


def _warmup_requests(texts, texts_b, pair):
    """Warm-up inputs: one request per example, then one with all of them; [] if no texts."""
    if texts is None:
        if texts_b is not None:
            raise ValueError("warmup_texts_b needs warmup_texts")
        return []
    if isinstance(texts, (str, bytes)):
        raise ValueError("warmup_texts is a list of texts, got a single string")
    texts = list(texts)
    if not texts:
        raise ValueError("warmup_texts is empty; pass None for no warm-up file")
    if len(texts) + 1 > MAX_WARMUP_RECORDS:
        raise ValueError(f"{len(texts)} warmup_texts make more than {MAX_WARMUP_RECORDS} warm-up records, "
                         "TF Serving's limit; a few examples are enough")
    columns = {"text": texts}
    if pair:
        texts_b = None if texts_b is None or isinstance(texts_b, (str, bytes)) else list(texts_b)
        if texts_b is None or len(texts_b) != len(texts):
            raise ValueError("a pair classifier needs warmup_texts_b, a list as long as warmup_texts")
        columns["text_b"] = texts_b
    elif texts_b is not None:
        raise ValueError("warmup_texts_b is only for pair=True")
    requests = [{name: column[i:i + 1] for name, column in columns.items()} for i in range(len(texts))]
    if len(texts) > 1:
        requests.append(columns)
    return requests
