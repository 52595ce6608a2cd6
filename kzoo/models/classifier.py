"""`bert_classifier`: sentence (pair) classification on a BERT encoder."""

import keras

from kzoo import configs
from kzoo.layers import ClassificationHead
from kzoo.layers.pooling import POOLING_MODES, SentencePooling
from kzoo.models.encoder import bert_encoder, encoder_inputs


def bert_classifier(encoder_or_config, num_classes, dropout=0.1, seq_length=None, name="bert_classifier",
                    pooling="pooler", **encoder_kwargs):
    """A classifier: encoder `pooled_output` -> dropout -> dense logits.

    This is the head of google-research/bert's `run_classifier.py`; logits are
    float32 (use `from_logits=True` losses). With another `pooling` the head
    reads a `kzoo.layers.SentencePooling` of the token states instead (the
    layer named "pooling"): "cls" (the first token's state, without the
    pooler's dense + tanh), "mean" or "max" over the real tokens, as a
    sentence-transformers checkpoint was trained to pool.

    Args:
        encoder_or_config: a kzoo encoder `keras.Model` (e.g. from
            `kzoo.models.bert_encoder` or `kzoo.checkpoints.load_pretrained`),
            or a `BertConfig` to build a fresh one.
        num_classes: number of classes.
        dropout: dropout rate before the output layer.
        seq_length: static input length (None for dynamic).
        name: model name.
        pooling: "pooler" (the encoder's `pooled_output`), "cls", "mean" or
            "max".
        **encoder_kwargs: passed to `bert_encoder` when given a config.

    Example:
    >>> config = configs.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                             num_attention_heads=2, intermediate_size=32)
    >>> model = bert_classifier(config, num_classes=3)
    >>> ids = keras.ops.ones((2, 4), "int32")
    >>> model({"input_word_ids": ids, "input_mask": ids, "input_type_ids": ids * 0}).shape
    (2, 3)
    """
    if isinstance(encoder_or_config, configs.BertConfig):
        encoder = bert_encoder(encoder_or_config, seq_length=seq_length, **encoder_kwargs)
    elif isinstance(encoder_or_config, keras.Model):
        if encoder_kwargs:
            raise ValueError(f"encoder options {sorted(encoder_kwargs)} only apply when given a BertConfig")
        encoder = encoder_or_config
    else:
        raise TypeError(f"expected a BertConfig or an encoder keras.Model, got {type(encoder_or_config).__name__}")
    if pooling not in POOLING_MODES:
        raise ValueError(f"pooling must be one of {list(POOLING_MODES)}, got {pooling!r}")
    inputs = encoder_inputs(seq_length)
    outputs = encoder(inputs)
    pooled = outputs["pooled_output"]
    if pooling != "pooler":
        pooled = SentencePooling(pooling, name="pooling")(outputs["sequence_output"], inputs["input_mask"])
    logits = ClassificationHead(num_classes, dropout=dropout, name="classifier")(pooled)
    return keras.Model(inputs, logits, name=name)
