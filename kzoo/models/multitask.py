"""Fine-tuning a classifier with an auxiliary masked-LM loss.

The training model runs the classifier on the clean inputs and the shared
encoder a second time on dynamically masked word ids (`kzoo.data.masking`),
scoring the masked positions with a `MaskedLMHead` tied to the word
embeddings. Every encoder and head variable is the classifier's own, so
training the multitask model fine-tunes `classifier`, which is what gets
saved and exported; only the MLM head's transform and bias are extra.
"""

import keras

from kzoo.models.walk import find_encoder
from kzoo.layers.heads import IGNORE_LABEL
from kzoo.models.pretrainer import masked_lm_head
from kzoo.models.encoder import INPUT_NAMES, encoder_inputs

MLM_INPUT_NAMES = ("masked_input_word_ids", "masked_lm_positions")


def with_auxiliary_mlm(classifier, mlm_head=None, max_predictions_per_seq=None, name=None):
    """A training model: classifier logits plus MLM logits on masked inputs.

    Inputs: the encoder input dict plus `masked_input_word_ids` [batch, seq]
    and `masked_lm_positions` [batch, P] (int32, as `MLMMasker` makes them).
    Outputs: `{"logits": classifier(clean inputs), "mlm_logits":
    mlm_head(encoder(masked ids, same mask and types)["sequence_output"],
    masked_lm_positions)}` ([batch, P, vocab], float32).

    Args:
        classifier: a kzoo classifier (e.g. `bert_classifier`); its encoder is
            found with `kzoo.models.find_encoder`.
        mlm_head: a tied `MaskedLMHead`; default `masked_lm_head(encoder)`.
        max_predictions_per_seq: static P of the positions input (or None).
        name: model name (default: "<classifier name>_with_mlm").

    Example:
    >>> from kzoo import configs
    >>> from kzoo.models.classifier import bert_classifier
    >>> config = configs.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                             num_attention_heads=2, intermediate_size=32)
    >>> model = with_auxiliary_mlm(bert_classifier(config, num_classes=2))
    >>> loss, loss_weights = auxiliary_mlm_losses(aux_weight=0.1)
    >>> model.compile(optimizer="adam", loss=loss, loss_weights=loss_weights)
    >>> sorted(model.output)
    ['logits', 'mlm_logits']
    """
    encoder = find_encoder(classifier)
    if mlm_head is None:
        mlm_head = masked_lm_head(encoder)
    elif not mlm_head.tied:
        raise ValueError("mlm_head is not tied to a word-embedding table: call mlm_head.tie(...) first")
    seq_length = classifier.inputs[0].shape[1]
    inputs = encoder_inputs(seq_length)
    inputs["masked_input_word_ids"] = keras.Input((seq_length,), dtype="int32", name="masked_input_word_ids")
    inputs["masked_lm_positions"] = keras.Input((max_predictions_per_seq,), dtype="int32",
                                                name="masked_lm_positions")
    clean = {key: inputs[key] for key in INPUT_NAMES}
    logits = classifier(clean)
    masked = {**clean, "input_word_ids": inputs["masked_input_word_ids"]}
    sequence_output = encoder(masked)["sequence_output"]
    mlm_logits = mlm_head(sequence_output, inputs["masked_lm_positions"])
    return keras.Model(inputs, {"logits": logits, "mlm_logits": mlm_logits},
                       name=name or f"{classifier.name}_with_mlm")


def auxiliary_mlm_losses(aux_weight=0.1):
    """`(loss, loss_weights)` for compiling `with_auxiliary_mlm(...)`.

    Class cross-entropy plus `aux_weight` times the MLM cross-entropy,
    averaged over real masked positions (targets `-100` are ignored).

    Example:
    >>> loss, weights = auxiliary_mlm_losses(0.5)
    >>> weights
    {'logits': 1.0, 'mlm_logits': 0.5}
    """
    if aux_weight < 0:
        raise ValueError(f"aux_weight must be >= 0, got {aux_weight}")
    loss = {
        "logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "mlm_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_LABEL),
    }
    return loss, {"logits": 1.0, "mlm_logits": float(aux_weight)}


def auxiliary_mlm_dataset(dataset, masker):
    """Maps (features, labels) batches to the multitask model's inputs and targets.

    Returns batches of (features + `masked_input_word_ids` and
    `masked_lm_positions`, {"logits": labels, "mlm_logits": masked_lm_ids}).
    Masking is drawn afresh on every pass (see `kzoo.data.masking`).

    Args:
        dataset: batched (features, labels) dataset, e.g. from
            `kzoo.data.classification_dataset`.
        masker: a `kzoo.data.masking.MLMMasker`.

    Example:
    >>> import numpy as np, tensorflow as tf
    >>> from kzoo.data.masking import MLMMasker
    >>> ids = np.array([[2, 7, 8, 9, 3]] * 4, "int32")
    >>> ds = tf.data.Dataset.from_tensor_slices(
    ...     ({"input_word_ids": ids, "input_mask": ids * 0 + 1, "input_type_ids": ids * 0}, [0, 1, 0, 1])).batch(2)
    >>> x, y = next(iter(auxiliary_mlm_dataset(ds, MLMMasker(10, 4, [0, 2, 3], max_predictions_per_seq=2))))
    >>> sorted(x), sorted(y)
    (['input_mask', 'input_type_ids', 'input_word_ids', 'masked_input_word_ids', 'masked_lm_positions'], ['logits', 'mlm_logits'])
    """

    def add_mlm(features, labels):
        out = masker(features)
        inputs = {key: out[key] for key in INPUT_NAMES + MLM_INPUT_NAMES}
        return inputs, {"logits": labels, "mlm_logits": out["masked_lm_ids"]}

    return dataset.map(add_mlm)
