"""Sentence embeddings: one vector per text from any kzoo encoder."""

import keras

from kzoo.layers.pooling import POOLING_MODES, SentencePooling
from kzoo.models.encoder import encoder_inputs


def sentence_encoder(encoder, pooling=None, normalize=None, max_seq_length=None, seq_length=None,
                     name="sentence_encoder"):
    """A `keras.Model` from the encoder's inputs (`input_word_ids`,
    `input_mask`, `input_type_ids`) to one float32 embedding per text,
    [batch, hidden] (`kzoo.layers.SentencePooling`, the layer named
    "pooling").

    Args:
        encoder: a kzoo encoder `keras.Model` (`kzoo.models.bert_encoder`), or
            what `kzoo.checkpoints.load_pretrained` returns: then the pooling,
            normalisation and truncation length default to what a
            sentence-transformers checkpoint was trained with
            (`Pretrained.sentence`; all-MiniLM-L6-v2: mean, normalised, 256).
        pooling: "mean" over the real tokens (padding masked exactly),
            "cls" (the first token), "max" over the real tokens, or "pooler"
            (the encoder's `pooled_output`). None: the checkpoint's, else
            "mean".
        normalize: divide by the L2 norm (cosine similarity = dot product).
            None: the checkpoint's, else False.
        max_seq_length: the truncation length (tokens, specials included)
            recorded for exports (`kzoo.export.export_sentence_encoder`).
            None: the checkpoint's, else unknown.
        seq_length: static input length (None for dynamic).
        name: model name.

    Example:
    >>> from kzoo import configs
    >>> from kzoo.models import bert_encoder
    >>> config = configs.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                             num_attention_heads=2, intermediate_size=32)
    >>> model = sentence_encoder(bert_encoder(config), pooling="mean", normalize=True)
    >>> ids = keras.ops.ones((2, 4), "int32")
    >>> model({"input_word_ids": ids, "input_mask": ids, "input_type_ids": ids * 0}).shape
    (2, 16)
    """
    settings = None
    if not isinstance(encoder, keras.Model) and isinstance(getattr(encoder, "encoder", None), keras.Model):
        settings = getattr(encoder, "sentence", None)  # a kzoo.checkpoints.Pretrained
        encoder = encoder.encoder
    if not isinstance(encoder, keras.Model):
        raise TypeError(f"expected an encoder keras.Model or a Pretrained, got {type(encoder).__name__}")
    if pooling is None:
        pooling = settings.pooling if settings else "mean"
    if normalize is None:
        normalize = settings.normalize if settings else False
    if max_seq_length is None and settings:
        max_seq_length = settings.max_seq_length
    if pooling not in POOLING_MODES:
        raise ValueError(f"pooling must be one of {list(POOLING_MODES)}, got {pooling!r}")
    inputs = encoder_inputs(seq_length)
    outputs = encoder(inputs)
    pool = SentencePooling(pooling, normalize=normalize, max_seq_length=max_seq_length, name="pooling")
    if pooling == "pooler":
        embeddings = pool(outputs["sequence_output"], inputs["input_mask"], pooled=outputs["pooled_output"])
    else:
        embeddings = pool(outputs["sequence_output"], inputs["input_mask"])
    return keras.Model(inputs, embeddings, name=name)


def find_pooling(model):
    """The `SentencePooling` layer of a sentence encoder (None when it has none)."""
    found = [layer for layer in model.layers if isinstance(layer, SentencePooling)]
    if len(found) > 1:
        raise ValueError(f"{model.name} holds {len(found)} SentencePooling layers; expected one")
    return found[0] if found else None
