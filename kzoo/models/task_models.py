"""Span labeling (SQuAD) and token tagging models on a BERT encoder."""

import keras

from kzoo.layers import SpanHead, TokenClassificationHead
from kzoo.models.encoder import encoder_inputs


def bert_span_labeler(encoder, seq_length=None, initializer_range=0.02, name="bert_span_labeler"):
    """Start and end logits over the tokens, for extractive QA.

    Args:
        encoder: a kzoo encoder `keras.Model`.
        seq_length: static input length (None for dynamic).
        initializer_range: stddev of the head's initialiser.
        name: model name.

    Returns:
        A `keras.Model` from the encoder's input dict to
        `{"start_logits": [batch, seq], "end_logits": [batch, seq]}` (float32).
    """
    inputs = encoder_inputs(seq_length)
    start, end = SpanHead(initializer_range, name="span")(encoder(inputs)["sequence_output"])
    # float32 names for the outputs (a mixed-precision Identity would cast the logits down)
    outputs = {"start_logits": keras.layers.Identity(name="start_logits", dtype="float32")(start),
               "end_logits": keras.layers.Identity(name="end_logits", dtype="float32")(end)}
    return keras.Model(inputs, outputs, name=name)


def bert_token_classifier(encoder, num_tags, dropout=0.1, seq_length=None, initializer_range=0.02,
                          name="bert_token_classifier"):
    """Tag logits for every token ([batch, seq, num_tags], float32).

    Train with first-wordpiece labels and `ignore_class=-100` (see
    `kzoo.data.conll.tagging_dataset`).

    Args:
        encoder: a kzoo encoder `keras.Model`.
        num_tags: number of tags.
        dropout: dropout rate before the output layer.
        seq_length: static input length (None for dynamic).
        initializer_range: stddev of the head's initialiser.
        name: model name.
    """
    inputs = encoder_inputs(seq_length)
    logits = TokenClassificationHead(num_tags, dropout=dropout, initializer_range=initializer_range,
                                     name="tagger")(encoder(inputs)["sequence_output"])
    return keras.Model(inputs, logits, name=name)
