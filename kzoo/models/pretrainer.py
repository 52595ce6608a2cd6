"""`bert_pretrainer`: BERT's masked-LM and next-sentence-prediction heads on an encoder.

google-research/bert's `run_pretraining.py` model: the masked-LM head
(`get_masked_lm_output`: dense + activation + LayerNorm, then logits against
the word-embedding table plus an output bias) at the masked positions, and the
next-sentence head (`get_next_sentence_output`: 2 logits over the pooled
output). Both heads load from, and save to, the official `cls/*` checkpoint
names (`kzoo.checkpoints`).

Losses and metrics follow the official script: MLM cross-entropy averaged over
the real masked positions only (targets `-100` in padding slots, the
`masked_lm_weights` 0 of official TFRecords), NSP cross-entropy, MLM and NSP
accuracy.
"""

import re

import keras
import numpy as np
import tensorflow as tf

from kzoo.layers.embeddings import BertEmbeddings
from kzoo.layers.heads import IGNORE_LABEL, NextSentenceHead
from kzoo.layers.masked_lm import MaskedLMHead
from kzoo.layers.transformer import TransformerEncoderBlock
from kzoo.models.encoder import INPUT_NAMES
from kzoo.models.walk import find_encoder

POSITIONS = "masked_lm_positions"


def masked_lm_head(encoder, name="mlm"):
    """A `MaskedLMHead` sized and tied to a kzoo encoder.

    Vocabulary, width and initializer range come from the encoder's
    `BertEmbeddings`; activation and LayerNorm epsilon from its first
    `TransformerEncoderBlock` (as google-research/bert, which uses
    `hidden_act` for the transform).

    Args:
        encoder: a kzoo encoder `keras.Model`, or a model containing exactly
            one (e.g. a `bert_classifier`).
        name: layer name.

    Example:
    >>> from kzoo import configs
    >>> from kzoo.models.encoder import bert_encoder
    >>> encoder = bert_encoder(configs.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                                           num_attention_heads=2, intermediate_size=32))
    >>> head = masked_lm_head(encoder)
    >>> tuple(head(keras.ops.ones((2, 4, 16)), keras.ops.zeros((2, 1), "int32")).shape)
    (2, 1, 50)
    """
    encoder = find_encoder(encoder)
    (embeddings,) = [layer for layer in encoder.layers if isinstance(layer, BertEmbeddings)]
    blocks = [layer for layer in encoder.layers if isinstance(layer, TransformerEncoderBlock)]
    if not blocks:
        raise ValueError(f"encoder {encoder.name!r} has no TransformerEncoderBlock")
    return MaskedLMHead(
        vocab_size=embeddings.vocab_size,
        hidden_size=embeddings.hidden_size,
        activation=blocks[0].activation,
        layer_norm_eps=blocks[0].layer_norm_eps,
        initializer_range=embeddings.initializer_range,
        embeddings=embeddings,
        name=name,
    )


@keras.saving.register_keras_serializable(package="kzoo")
class BertPretrainer(keras.Model):
    """An encoder with BERT's pretraining heads (see `bert_pretrainer`).

    Call it on the encoder's input dict, optionally with int32
    `masked_lm_positions` [batch, P]; it returns `{"mlm_logits": [batch, P,
    vocab] (or [batch, seq, vocab] without positions), "nsp_logits": [batch,
    2]}` (no `nsp_logits` when built with `nsp=False`), all float32.

    The MLM head is tied to the encoder's word table again whenever the model
    is constructed, so `model.save` / `keras.models.load_model` round-trip.
    """

    def __init__(self, encoder, nsp=True, name="bert_pretrainer", **kwargs):
        super().__init__(name=name, **kwargs)
        self.encoder = find_encoder(encoder)
        self.nsp = bool(nsp)
        self.masked_lm = masked_lm_head(self.encoder, name="masked_lm")
        self.next_sentence = NextSentenceHead(initializer_range=self.masked_lm.initializer_range,
                                              name="next_sentence") if self.nsp else None
        hidden = self.encoder.output["sequence_output"].shape[-1]  # ALBERT's / ELECTRA's tables are narrower
        self.masked_lm.build((None, None, hidden))
        if self.next_sentence is not None:
            self.next_sentence.build((None, hidden))
        self.built = True

    def call(self, inputs, training=None):
        missing = [key for key in INPUT_NAMES if key not in inputs]
        if missing:
            raise ValueError(f"{self.name}: inputs lack {missing}; expected {list(INPUT_NAMES)} "
                             f"(+ optional {POSITIONS!r}), got {sorted(inputs)}")
        outputs = self.encoder({key: inputs[key] for key in INPUT_NAMES}, training=training)
        result = {"mlm_logits": self.masked_lm(outputs["sequence_output"], inputs.get(POSITIONS))}
        if self.next_sentence is not None:
            result["nsp_logits"] = self.next_sentence(outputs["pooled_output"])
        return result

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "nsp": self.nsp,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"], custom_objects=custom_objects)
        return cls(**config)


def bert_pretrainer(encoder, nsp=True, name="bert_pretrainer"):
    """BERT's pretraining model: a tied masked-LM head and (optionally) NSP.

    Args:
        encoder: a kzoo encoder (`kzoo.models.bert_encoder`,
            `kzoo.checkpoints.load_pretrained(...).encoder`), or a model
            holding exactly one.
        nsp: add the next-sentence-prediction head (False: RoBERTa-style
            MLM only).
        name: model name.

    Returns:
        A `BertPretrainer` (`keras.Model`). Inputs: `input_word_ids`,
        `input_mask`, `input_type_ids` and optional `masked_lm_positions`;
        outputs `mlm_logits`, `nsp_logits`. Compile it with
        `pretraining_losses` / `pretraining_metrics` (or `compile_pretrainer`).

    Example:
    >>> from kzoo import configs
    >>> from kzoo.models.encoder import bert_encoder
    >>> config = configs.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                             num_attention_heads=2, intermediate_size=32)
    >>> model = bert_pretrainer(bert_encoder(config))
    >>> ids = keras.ops.ones((2, 6), "int32")
    >>> out = model({"input_word_ids": ids, "input_mask": ids, "input_type_ids": ids * 0,
    ...              "masked_lm_positions": keras.ops.ones((2, 3), "int32")})
    >>> tuple(out["mlm_logits"].shape), tuple(out["nsp_logits"].shape)
    ((2, 3, 50), (2, 2))
    """
    return BertPretrainer(encoder, nsp=nsp, name=name)


@keras.saving.register_keras_serializable(package="kzoo")
class MaskedLMAccuracy(keras.metrics.Metric):
    """Accuracy over the real masked positions (targets != -100) only."""

    def __init__(self, name="accuracy", dtype="float32", ignore_class=IGNORE_LABEL, **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        self.ignore_class = ignore_class
        self.correct = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="correct")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.cast(y_true, "int32")
        real = keras.ops.cast(keras.ops.not_equal(y_true, self.ignore_class), "float32")
        hit = keras.ops.cast(keras.ops.equal(keras.ops.cast(keras.ops.argmax(y_pred, axis=-1), "int32"), y_true),
                             "float32")
        self.correct.assign_add(keras.ops.sum(hit * real))
        self.count.assign_add(keras.ops.sum(real))

    def result(self):
        return keras.ops.divide_no_nan(self.correct, self.count)

    def reset_state(self):
        self.correct.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}


@keras.saving.register_keras_serializable(package="kzoo")
class MaskedLMLoss(MaskedLMAccuracy):
    """MLM cross-entropy averaged over every real masked position seen (a
    token-weighted mean over the whole evaluation, not a mean of batch means)."""

    def __init__(self, name="token_loss", dtype="float32", ignore_class=IGNORE_LABEL, **kwargs):
        super().__init__(name=name, dtype=dtype, ignore_class=ignore_class, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.cast(y_true, "int32")
        real = keras.ops.not_equal(y_true, self.ignore_class)
        safe = keras.ops.where(real, y_true, 0)
        losses = keras.losses.sparse_categorical_crossentropy(safe, keras.ops.cast(y_pred, "float32"),
                                                              from_logits=True)
        real = keras.ops.cast(real, "float32")
        self.correct.assign_add(keras.ops.sum(losses * real))
        self.count.assign_add(keras.ops.sum(real))


def pretraining_losses(nsp=True):
    """Losses for `BertPretrainer` outputs: MLM cross-entropy averaged over the
    real masked positions of the batch (targets -100 ignored), NSP
    cross-entropy; the total is their sum, as google-research/bert."""
    losses = {"mlm_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                        ignore_class=IGNORE_LABEL)}
    if nsp:
        losses["nsp_logits"] = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return losses


def pretraining_metrics(nsp=True):
    """MLM accuracy and token-weighted MLM loss over the real masked positions,
    and NSP accuracy.

    Keras prefixes metrics with the output name when there are two outputs,
    so the logs of an NSP model read `mlm_logits_loss`, `nsp_logits_loss`
    (Keras' per-output losses), `mlm_logits_accuracy`,
    `mlm_logits_token_loss` and `nsp_logits_accuracy`; an MLM-only model logs
    `loss` (the MLM loss), `accuracy` and `token_loss`. `token_loss` is the
    exact mean over every masked token seen (use it to compare held-out
    losses); the per-output loss is a mean of batch means."""
    metrics = {"mlm_logits": [MaskedLMAccuracy(), MaskedLMLoss()]}
    if nsp:
        metrics["nsp_logits"] = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    return metrics


def metric_key(model, output, metric):
    """The key of a `pretraining_metrics` entry in the fit/evaluate logs of
    `model` (e.g. `metric_key(model, "mlm", "token_loss")`)."""
    return f"{output}_logits_{metric}" if model.nsp else metric


def compile_pretrainer(model, optimizer, **kwargs):
    """Compiles a `BertPretrainer` with `pretraining_losses` and `pretraining_metrics`."""
    model.compile(optimizer=optimizer, loss=pretraining_losses(model.nsp), metrics=pretraining_metrics(model.nsp),
                  **kwargs)
    return model


MASK = "[MASK]"


def mask_markers(tokenizer):
    """The strings `fill_mask` reads as a mask in a text: the tokenizer's own mask token
    (`[MASK]`; RoBERTa's and XLM-R's `<mask>`) and, for every family, `[MASK]`."""
    own = tokenizer.ids_to_tokens(tf.constant([tokenizer.mask_token_id])).numpy()[0].decode("utf-8")
    return tuple(dict.fromkeys([own, MASK]))


def _mask_ids(tokenizer, text, markers):
    """`text` -> ids without special tokens, the mask id at every marker. The tokenizers do not
    recognise special strings, so the text is split around the markers and each piece is
    tokenized alone; whitespace before a marker is dropped (the mask token absorbs it, as
    transformers' `<mask>` / `[MASK]` with `lstrip=True` do), the space after one is kept (it
    makes RoBERTa's next word "Ġword")."""
    pattern = "|".join(re.escape(m) for m in sorted(markers, key=len, reverse=True))
    pieces = re.split(pattern, text)
    if len(pieces) < 2:
        raise ValueError(f"no mask in {text!r}: mark each one with {' or '.join(markers)}")
    ids = []
    for i, piece in enumerate(pieces):
        if i:
            ids.append(tokenizer.mask_token_id)
        if i < len(pieces) - 1:
            piece = piece.rstrip()
        if piece.strip():
            ids.extend(int(t) for t in tokenizer(tf.constant([piece]))[0].numpy())
    return ids


def fill_mask_ids(tokenizer, text):
    """The packed ids `fill_mask` runs the model on for one text: `[CLS] ... [SEP]` (`<s> ...
    </s>`) with the mask id at every mask marker (`mask_markers`)."""
    return [tokenizer.cls_token_id, *_mask_ids(tokenizer, text, mask_markers(tokenizer)), tokenizer.sep_token_id]


def fill_mask(model, tokenizer, texts, top_k=5, max_seq_length=128):
    """Top-k predictions of a masked-LM for every mask in each text, for any family.

    A mask is the tokenizer's mask token (`[MASK]`; `<mask>` for RoBERTa and
    XLM-R) or, for every family, `[MASK]`, matched literally (not lower-cased
    or split); the text around it is tokenized by `tokenizer` (any kzoo
    tokenizer; whitespace before a mask is dropped, see `_mask_ids`). Each
    text is packed alone by the family's layout: `[CLS] tokens [SEP]` or
    `<s> tokens </s>`.

    Args:
        model: a `BertPretrainer` (heads loaded from a pretraining checkpoint;
            `kzoo.checkpoints.load_masked_lm`).
        tokenizer: the checkpoint's tokenizer.
        texts: strings, each with at least one mask.
        top_k: predictions per mask.
        max_seq_length: longest packed input.

    Returns:
        One list per text, one entry per mask (in order): a list of
        `(token, probability)` pairs, most likely first; tokens are the
        vocabulary's pieces ("##ing", "\u2581paris", "\u0120Paris").
    """
    rows = []
    for text in texts:
        ids = fill_mask_ids(tokenizer, text)
        if len(ids) > max_seq_length:
            raise ValueError(f"{text[:60]!r}...: {len(ids)} tokens exceed max_seq_length {max_seq_length}")
        rows.append(ids)
    length = max(len(r) for r in rows)
    word_ids = np.full((len(rows), length), tokenizer.pad_token_id, "int32")
    mask = np.zeros((len(rows), length), "int32")
    for i, r in enumerate(rows):
        word_ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    logits = model({"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": np.zeros_like(word_ids)},
                   training=False)["mlm_logits"]
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
    results = []
    for i, r in enumerate(rows):
        per_text = []
        for position in [p for p, t in enumerate(r) if t == tokenizer.mask_token_id]:
            order = np.argsort(-probs[i, position], kind="stable")[:top_k]
            tokens = [t.decode("utf-8") for t in tokenizer.ids_to_tokens(order).numpy()]
            per_text.append([(tok, float(probs[i, position, j])) for tok, j in zip(tokens, order)])
        results.append(per_text)
    return results
