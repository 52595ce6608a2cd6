"""Export a sentence encoder as a SavedModel that takes raw text and returns embeddings."""

import os

import tensorflow as tf

from kzoo.export.classifier import _warmup_requests, checked_packed, pad_empty_batch
from kzoo.export.archive import PACKED_FEATURES, export_archive, traced_once
from kzoo.export.precision import serving_copy
from kzoo.export.versions import write_version
from kzoo.export.warmup import write_warmup_requests
from kzoo.models.sentence import find_pooling
from kzoo.text import BertPacker

# The truncation length when neither the caller nor the checkpoint gives one (BERT's position table).
DEFAULT_SEQ_LENGTH = 512


def sentence_seq_length(model, seq_length=None):
    """The truncation length an export of `model` uses: `seq_length` when given, else the
    `max_seq_length` its pooling layer records (what a sentence-transformers checkpoint was
    trained with), else 512."""
    if seq_length is not None:
        if isinstance(seq_length, bool) or not isinstance(seq_length, int) or seq_length < 3:
            raise ValueError(f"seq_length must be an integer >= 3, got {seq_length!r}")
        return seq_length
    pooling = find_pooling(model)
    if pooling is None:
        raise ValueError(f"{model.name} is not a sentence encoder (no SentencePooling layer): build it with "
                         "kzoo.models.sentence_encoder")
    return pooling.max_seq_length or DEFAULT_SEQ_LENGTH


def export_sentence_encoder(model, tokenizer, export_root, seq_length=None, version=None, warmup_texts=None,
                            model_name=None, compute_dtype=None):
    """Writes `export_root/<version>/`, a SavedModel TF Serving loads as-is.

    Signatures:
      - `serving_default`: `text` tf.string [batch] -> `embeddings` float32 [batch, dim].
        Tokenization and packing run in the graph (tensorflow-text ops, which stock TF
        Serving links), each batch padded to its longest text, truncated to `seq_length`
        tokens ([CLS] and [SEP] included, as sentence-transformers' `max_seq_length` counts).
      - `serve_packed`: int32 `input_word_ids`, `input_mask`, `input_type_ids` [batch, seq]
        -> the same output.

    Bad input has defined outputs, as the classifier export's (`kzoo.export.export_classifier`):
    an empty string is `[CLS] [SEP]` and gets that sequence's embedding; a 100k-character
    string is truncated to `seq_length` tokens; invalid UTF-8 bytes are dropped; a batch of
    zero gives a [0, dim] result.

    Args:
        model: a sentence encoder (`kzoo.models.sentence_encoder`).
        tokenizer: its kzoo tokenizer (`Pretrained.tokenizer`).
        export_root: the model's base path (e.g. `savedmodels/minilm_embeddings`).
        seq_length: truncation length; None: what the checkpoint was trained with when known
            (`sentence_encoder`'s `max_seq_length`; all-MiniLM-L6-v2: 256), else 512.
        version: integer version; default: the next free one.
        warmup_texts: optional example texts for `assets.extra/tf_serving_warmup_requests`.
        model_name: `model_spec.name` of the warm-up requests (default: the base name of
            `export_root`).
        compute_dtype: None (the model as it computes), "float32" or "bfloat16": the encoder's
            projections multiply in bfloat16, everything else in float32, outputs unchanged in
            dtype (`kzoo.export.precision.serving_copy`; the SavedModel stores those kernels in
            bfloat16). For CPUs with AVX512-BF16 / AMX, TPUs and recent GPUs.

    Returns:
        The path of the version folder written.
    """
    seq_length = sentence_seq_length(model, seq_length)
    warmup = _warmup_requests(warmup_texts, None, False)
    model = serving_copy(model, compute_dtype, real_tokens_only=True)  # pooling reads real tokens only
    run_model = traced_once(model)  # one trace for every endpoint and tracing pass
    if model_name is None:
        model_name = os.path.basename(os.path.normpath(os.fspath(export_root)))
    packer = BertPacker.from_tokenizer(tokenizer, seq_length, dynamic_length=True)

    def embed(features):
        return {"embeddings": tf.cast(run_model(pad_empty_batch(features)), tf.float32)}

    def serve_text(text):
        return embed(packer(tokenizer(text)))

    def serve_packed(input_word_ids, input_mask, input_type_ids):
        return embed(checked_packed(input_word_ids, input_mask, input_type_ids))

    def write(path):
        archive = export_archive(model, *tokenizer.resources)  # each variable stored once
        archive.add_endpoint("serving_default", serve_text, input_signature=[tf.TensorSpec([None], tf.string,
                                                                                           name="text")])
        archive.add_endpoint("serve_packed", serve_packed, input_signature=list(PACKED_FEATURES.values()))
        archive.write_out(path, verbose=False)
        if warmup:
            write_warmup_requests(path, model_name, warmup, signature_name="serving_default")

    return write_version(export_root, write, version)
