"""Heads on top of a BERT encoder: the pooler, classification, span, tagging
and next-sentence-prediction heads (the masked-LM head is in masked_lm.py)."""

import keras

from kzoo.layers.trainability import freeze_after_build

# The label of positions no loss or metric counts: padding, special tokens, word pieces after a word's first, unmasked
# positions of a masked LM. The data pipelines write it; the models' losses and metrics skip it.
IGNORE_LABEL = -100


@keras.saving.register_keras_serializable(package="kzoo")
class BertPooler(keras.layers.Layer):
    """BERT's pooler: a tanh dense layer over the first ([CLS]) token.

    The encoder's `pooled_output` for every family: BERT, ALBERT, RoBERTa and
    XLM-R use it as it is; DistilBERT with `activation="relu"` (its sequence
    classifier's `pre_classifier` dense and ReLU); ELECTRA with `dense=False`
    (no weights: the first token's hidden state itself, as ELECTRA's
    `get_pooled_output` and fine-tuning heads take it).

    Args:
        hidden_size: output width.
        initializer_range: stddev of the truncated-normal kernel initialiser.
        activation: the dense layer's activation ("tanh" for BERT).
        dense: False for no dense layer (the first token itself).

    Example:
    >>> tuple(BertPooler(hidden_size=8)(keras.ops.ones((2, 5, 8))).shape)
    (2, 8)
    >>> BertPooler(hidden_size=8, dense=False).weights
    []
    """

    def __init__(self, hidden_size, initializer_range=0.02, activation="tanh", dense=True, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.initializer_range = initializer_range
        self.activation = activation
        self.use_dense = bool(dense)
        self.dense = None
        if self.use_dense:
            self.dense = keras.layers.Dense(
                hidden_size,
                activation=activation,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range),
                dtype=self.dtype_policy,
                name="dense",
            )

    def build(self, input_shape):
        if self.dense is not None:
            self.dense.build((input_shape[0], input_shape[-1]))
        elif input_shape[-1] is not None and input_shape[-1] != self.hidden_size:
            raise ValueError(f"{self.name}: without a dense layer the pooled width is the input's, "
                             f"{input_shape[-1]}, not hidden_size {self.hidden_size}")
        self.built = True
        freeze_after_build(self)  # a frozen head reloads frozen

    def call(self, sequence_output):
        first = sequence_output[:, 0, :]
        return first if self.dense is None else self.dense(first)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.hidden_size)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, initializer_range=self.initializer_range,
                      activation=self.activation, dense=self.use_dense)
        return config


@keras.saving.register_keras_serializable(package="kzoo")
class ClassificationHead(keras.layers.Layer):
    """Dropout then a dense layer to `num_classes` logits (float32 out).

    Args:
        num_classes: number of logits.
        dropout: dropout rate on the pooled input.
        initializer_range: stddev of the truncated-normal kernel initialiser.

    Example:
    >>> tuple(ClassificationHead(num_classes=3)(keras.ops.ones((2, 8))).shape)
    (2, 3)
    """

    def __init__(self, num_classes, dropout=0.1, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.dropout_rate = dropout
        self.initializer_range = initializer_range
        self.dropout = keras.layers.Dropout(dropout)
        # Logits stay float32 under mixed precision.
        self.dense = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range),
            dtype="float32",
            name="logits",
        )

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.built = True
        freeze_after_build(self)  # a frozen head reloads frozen

    def call(self, pooled, training=None):
        return self.dense(self.dropout(pooled, training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes, dropout=self.dropout_rate, initializer_range=self.initializer_range
        )
        return config


@keras.saving.register_keras_serializable(package="kzoo")
class SpanHead(keras.layers.Layer):
    """SQuAD span head: one dense layer to a start and an end logit per token
    (google-research/bert's `cls/squad/output_weights`), float32 out.

    Args:
        initializer_range: stddev of the truncated-normal kernel initialiser.

    Example:
    >>> start, end = SpanHead()(keras.ops.ones((2, 5, 8)))
    >>> tuple(start.shape), tuple(end.shape)
    ((2, 5), (2, 5))
    """

    def __init__(self, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.initializer_range = initializer_range
        self.dense = keras.layers.Dense(
            2, kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range), dtype="float32",
            name="logits",
        )

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.built = True
        freeze_after_build(self)  # a frozen head reloads frozen

    def call(self, sequence_output):
        logits = self.dense(sequence_output)
        return logits[..., 0], logits[..., 1]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]), tuple(input_shape[:-1])

    def get_config(self):
        return {**super().get_config(), "initializer_range": self.initializer_range}


@keras.saving.register_keras_serializable(package="kzoo")
class TokenClassificationHead(ClassificationHead):
    """Per-token tagging head: dropout then dense logits for every position
    ([batch, seq, num_tags], float32)."""

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_classes,)


@keras.saving.register_keras_serializable(package="kzoo")
class NextSentenceHead(keras.layers.Layer):
    """BERT's next-sentence-prediction head: a dense layer from the pooled
    output to 2 logits (index 0: B follows A, 1: B is a random sentence, as
    google-research/bert's `is_random_next`), float32 out.

    The official checkpoint stores the kernel transposed, as
    `cls/seq_relationship/output_weights` [2, hidden] (with
    `cls/seq_relationship/output_bias` [2]); the assignment map transposes it.

    Args:
        initializer_range: stddev of the truncated-normal kernel initialiser.

    Example:
    >>> tuple(NextSentenceHead()(keras.ops.ones((2, 8))).shape)
    (2, 2)
    """

    def __init__(self, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.initializer_range = initializer_range
        self.dense = keras.layers.Dense(
            2, kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range), dtype="float32",
            name="dense",
        )

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.built = True
        freeze_after_build(self)  # a frozen head reloads frozen

    def call(self, pooled_output):
        return self.dense(keras.ops.cast(pooled_output, "float32"))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2)

    def get_config(self):
        return {**super().get_config(), "initializer_range": self.initializer_range}
