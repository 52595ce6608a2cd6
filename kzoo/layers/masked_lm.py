"""BERT's masked-language-model head, tied to the encoder's word embeddings.

google-research/bert's `get_masked_lm_output`: gather the hidden states at the
masked positions, `transform` (dense + activation + LayerNorm), then logits
against the transposed word-embedding table plus a per-word bias. Official
checkpoint names of the three head weights:

- `cls/predictions/transform/dense/{kernel,bias}` -> `transform`
- `cls/predictions/transform/LayerNorm/{gamma,beta}` -> `transform_layer_norm`
- `cls/predictions/output_bias` -> `output_bias`
"""

import keras

from kzoo.layers import activations
from kzoo.layers.trainability import freeze_after_build
from kzoo.layers.embeddings import BertEmbeddings


def _embedding_variable(source):
    """The word-table variable of a `BertEmbeddings`, a `keras.layers.Embedding`
    or the variable itself."""
    if isinstance(source, BertEmbeddings):
        source = source.word_embeddings
    if isinstance(source, keras.layers.Embedding):
        if not source.built:
            raise ValueError(f"embedding layer {source.name!r} is not built yet: call it (or its model) first")
        return source.embeddings
    if isinstance(source, keras.Variable):
        return source
    raise TypeError(
        f"tie to a BertEmbeddings, a keras.layers.Embedding or a keras.Variable, got {type(source).__name__}"
    )


@keras.saving.register_keras_serializable(package="kzoo")
class MaskedLMHead(keras.layers.Layer):
    """BERT's MLM head with output weights tied to the word embeddings.

    `logits = LN(act(h W + b)) E^T + output_bias`, float32, where `E` is the
    encoder's [vocab, hidden] word table. The table is *not* a weight of this
    layer: `tie` keeps only a closure returning the variable (no layer or
    variable attribute, so Keras does not track it), so the variable appears
    once in a model's weights (under the embeddings), is saved once and is
    trained by the gradients of both uses. The tie is not part of the config:
    a deserialised head must be tied again before it is called.

    Args:
        vocab_size: rows of the tied word table (logit count).
        hidden_size: width of the encoder output and of the transform.
        activation: transform activation name, as `hidden_act` ("gelu" is the
            exact erf GELU).
        layer_norm_eps: epsilon of the transform LayerNorm.
        initializer_range: stddev of the truncated-normal transform kernel.
        embeddings: optional `BertEmbeddings`, `keras.layers.Embedding` or
            word-table variable to tie to now (same as calling `tie`).

    Call args:
        sequence_output: [batch, seq, hidden] encoder output.
        masked_positions: optional int [batch, P] positions to predict; the
            output is then [batch, P, vocab], else [batch, seq, vocab].

    Example:
    >>> embedding = keras.layers.Embedding(10, 8)
    >>> embedding.build((None,))
    >>> head = MaskedLMHead(vocab_size=10, hidden_size=8, embeddings=embedding)
    >>> tuple(head(keras.ops.ones((2, 5, 8)), keras.ops.zeros((2, 3), "int32")).shape)
    (2, 3, 10)
    """

    def __init__(self, vocab_size, hidden_size, activation="gelu", layer_norm_eps=1e-12, initializer_range=0.02,
                 embeddings=None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.activation = activation
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self._table = None  # a closure returning the tied variable (not tracked)
        self.transform = keras.layers.Dense(
            hidden_size,
            activation=activations.get_activation(activation),
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range),
            dtype=self.dtype_policy,
            name="transform",
        )
        self.transform_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_eps, dtype=self.dtype_policy, name="transform_layer_norm"
        )
        if embeddings is not None:
            self.tie(embeddings)

    def tie(self, embeddings):
        """Ties the output weights to a word table; returns self.

        Args:
            embeddings: a `BertEmbeddings`, a built `keras.layers.Embedding`
                or its [vocab_size, hidden_size] variable.
        """
        variable = _embedding_variable(embeddings)
        if tuple(variable.shape) != (self.vocab_size, self.hidden_size):
            raise ValueError(
                f"{self.name}: word table {variable.path} has shape {tuple(variable.shape)}, "
                f"the head needs ({self.vocab_size}, {self.hidden_size})"
            )
        self._table = lambda: variable
        return self

    @property
    def tied(self):
        return self._table is not None

    @property
    def tied_variable(self):
        """The word-table variable the head is tied to (None if untied)."""
        return self._table() if self._table is not None else None

    def build(self, sequence_output_shape, masked_positions_shape=None):
        self.transform.build(sequence_output_shape)
        self.transform_layer_norm.build(tuple(sequence_output_shape[:-1]) + (self.hidden_size,))
        self.output_bias = self.add_weight(
            shape=(self.vocab_size,), initializer="zeros", dtype="float32", autocast=False, name="output_bias"
        )
        self.built = True
        freeze_after_build(self)  # a frozen head reloads frozen

    def call(self, sequence_output, masked_positions=None):
        if self._table is None:
            raise ValueError(
                f"MaskedLMHead {self.name!r} is not tied to a word-embedding table: call "
                "head.tie(encoder_embeddings) (or build it with kzoo.models.masked_lm_head(encoder))"
            )
        if masked_positions is not None:
            positions = keras.ops.cast(masked_positions, "int32")
            sequence_output = keras.ops.take_along_axis(sequence_output, positions[:, :, None], axis=1)
        h = self.transform_layer_norm(self.transform(sequence_output))
        table = keras.ops.cast(self._table(), h.dtype)
        logits = keras.ops.matmul(h, keras.ops.transpose(table))
        return keras.ops.cast(logits, "float32") + self.output_bias  # float32 bias, never autocast

    def compute_output_shape(self, sequence_output_shape, masked_positions_shape=None):
        length = sequence_output_shape[1] if masked_positions_shape is None else masked_positions_shape[1]
        return (sequence_output_shape[0], length, self.vocab_size)

    def compute_output_spec(self, sequence_output, masked_positions=None):
        shape = self.compute_output_shape(
            sequence_output.shape, None if masked_positions is None else masked_positions.shape
        )
        return keras.KerasTensor(shape, dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            activation=self.activation,
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
        )
        return config
