"""BERT input embeddings: word + segment + position, then LayerNorm and dropout.

The same layer serves every family kzoo builds: DistilBERT has no segment
table (`type_vocab_size=0`), RoBERTa and XLM-R count positions from the
padding id (`padding_idx`), ALBERT and ELECTRA keep narrow tables
(`hidden_size` is the embedding width; the encoder projects it), DeBERTa-v3
has neither segments nor absolute positions but holds the relative-position
table every layer's disentangled attention shares (`relative_embeddings`).
"""

import keras
import keras_hub

from kzoo.layers.trainability import freeze_after_build, frozen_parts

POSITION_EMBEDDINGS = ("learned", "sinusoidal", "none")


@keras.saving.register_keras_serializable(package="kzoo")
class BertEmbeddings(keras.layers.Layer):
    """Sum of word, token-type and position embeddings, normalised.

    Learned positions use keras-hub's `PositionEmbedding` (a [max_positions,
    hidden] table, as BERT); sinusoidal ones keras-hub's `SinePositionEncoding`
    (no weights, any length); "none" adds no positions at all (for encoders
    whose attention sees relative positions instead:
    `kzoo.layers.RelativeMultiHeadAttention`), so any length runs and
    `position_embeddings` is None.

    Args:
        vocab_size: number of word ids.
        hidden_size: embedding width (the width of every table; ALBERT's and
            ELECTRA's `embedding_size`).
        max_position_embeddings: rows of the learned position table.
        type_vocab_size: number of segment ids; 0 for no segment table
            (DistilBERT): the type ids are then ignored.
        position_embedding: "learned", "sinusoidal" or "none".
        padding_idx: None for BERT's positions 0, 1, ..., seq-1. An id (1 for
            RoBERTa and XLM-R) makes the positions RoBERTa's, computed from
            the word ids as fairseq's `make_positions` and HF's
            `create_position_ids_from_input_ids` do: the k-th token that is
            not `padding_idx` (counting from 1) gets position
            `padding_idx + k`, every `padding_idx` token gets position
            `padding_idx`. Learned positions only.
        initializer_range: stddev of the truncated-normal initialiser.
        layer_norm_eps: LayerNorm epsilon.
        dropout: dropout rate applied after the LayerNorm.
        relative_embeddings: DeBERTa: rows of the relative-position table
            shared by every layer's `DisentangledSelfAttention` (2 *
            position_buckets; HF's `encoder.rel_embeddings`), width
            `hidden_size`; 0 (the default): none. With a table the layer
            returns `(embeddings, table)`, the table after its LayerNorm.
        relative_layer_norm: DeBERTa's `norm_rel_ebd="layer_norm"`: the table
            goes through its own LayerNorm (`relative_layer_norm`; HF's
            `encoder.LayerNorm`) at every call.
        mask_padding: DeBERTa: multiply the embeddings by `padding_mask`
            after the LayerNorm (padding positions become zeros, as
            DebertaV2Embeddings does); only padding positions change.
        frozen_parts: sub-layers to freeze when the layer is built
            ("word_embeddings", "token_type_embeddings",
            "position_embeddings", "layer_norm", "relative_embeddings",
            "relative_layer_norm", or a variable path such as
            "layer_norm/beta"). `get_config()` records the current freezing
            here, so that embeddings partly frozen by
            `kzoo.models.enable_parameter_efficient_training` (the tables
            frozen, the LayerNorm trainable) reload from a `.keras` file with
            the same trainable variables; see
            `kzoo.layers.trainability.frozen_parts`.

    Example:
    >>> layer = BertEmbeddings(vocab_size=10, hidden_size=8)
    >>> tuple(layer(keras.ops.ones((2, 3), "int32"), keras.ops.zeros((2, 3), "int32")).shape)
    (2, 3, 8)
    """

    def __init__(
        self,
        vocab_size,
        hidden_size,
        max_position_embeddings=512,
        type_vocab_size=2,
        position_embedding="learned",
        initializer_range=0.02,
        layer_norm_eps=1e-12,
        dropout=0.1,
        padding_idx=None,
        frozen_parts=(),
        relative_embeddings=0,
        relative_layer_norm=True,
        mask_padding=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if position_embedding not in POSITION_EMBEDDINGS:
            raise ValueError(f"position_embedding must be one of {POSITION_EMBEDDINGS}, got {position_embedding!r}")
        if padding_idx is not None and position_embedding != "learned":
            raise ValueError("padding_idx (RoBERTa's positions) needs position_embedding='learned'")
        if isinstance(type_vocab_size, bool) or not isinstance(type_vocab_size, int) or type_vocab_size < 0:
            raise ValueError(f"type_vocab_size must be a non-negative integer (0: no segment table), "
                             f"got {type_vocab_size!r}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.position_embedding = position_embedding
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.dropout_rate = dropout
        self.padding_idx = padding_idx
        if isinstance(relative_embeddings, bool) or not isinstance(relative_embeddings, int) or (
                relative_embeddings < 0):
            raise ValueError(f"relative_embeddings must be a non-negative number of rows (0: none), got "
                             f"{relative_embeddings!r}")
        self.relative_rows = relative_embeddings
        self.use_relative_layer_norm = bool(relative_layer_norm)
        self.mask_padding = bool(mask_padding)
        self._frozen_parts = [str(p) for p in (frozen_parts or ())]

        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.word_embeddings = keras.layers.Embedding(
            vocab_size, hidden_size, embeddings_initializer=init, dtype=self.dtype_policy, name="word_embeddings"
        )
        self.token_type_embeddings = None
        if type_vocab_size:
            self.token_type_embeddings = keras.layers.Embedding(
                type_vocab_size, hidden_size, embeddings_initializer=init, dtype=self.dtype_policy,
                name="token_type_embeddings",
            )
        if position_embedding == "learned":
            self.position_embeddings = keras_hub.layers.PositionEmbedding(
                sequence_length=max_position_embeddings, initializer=init, dtype=self.dtype_policy,
                name="position_embeddings",
            )
        elif position_embedding == "none":
            self.position_embeddings = None
        else:
            self.position_embeddings = keras_hub.layers.SinePositionEncoding(
                dtype=self.dtype_policy, name="position_embeddings"
            )
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_eps, dtype=self.dtype_policy, name="layer_norm"
        )
        self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.relative_embeddings = None
        self.relative_layer_norm = None
        if relative_embeddings:
            self.relative_embeddings = keras.layers.Embedding(
                relative_embeddings, hidden_size, embeddings_initializer=init, dtype=self.dtype_policy,
                name="relative_embeddings",
            )
            if self.use_relative_layer_norm:
                self.relative_layer_norm = keras.layers.LayerNormalization(
                    epsilon=layer_norm_eps, dtype=self.dtype_policy, name="relative_layer_norm"
                )

    def build(self, word_ids_shape, type_ids_shape=None):
        self.word_embeddings.build(word_ids_shape)
        if self.token_type_embeddings is not None:
            self.token_type_embeddings.build(word_ids_shape)
        embedded_shape = tuple(word_ids_shape) + (self.hidden_size,)
        if self.position_embeddings is not None:
            self.position_embeddings.build(embedded_shape)
        self.layer_norm.build(embedded_shape)
        if self.relative_embeddings is not None:
            self.relative_embeddings.build((self.relative_rows,))
            if self.relative_layer_norm is not None:
                self.relative_layer_norm.build((self.relative_rows, self.hidden_size))
        self.built = True
        freeze_after_build(self, self._frozen_parts)

    def call(self, word_ids, type_ids=None, padding_mask=None, training=None):
        x = self.word_embeddings(word_ids)
        if self.token_type_embeddings is not None:
            x = x + self.token_type_embeddings(type_ids)
        if self.position_embeddings is None:
            pass
        elif self.padding_idx is None:
            x = x + self.position_embeddings(x)
        else:
            x = x + keras.ops.take(keras.ops.cast(self.position_embeddings.position_embeddings, x.dtype),
                                   self.position_ids(word_ids), axis=0)
        x = self.layer_norm(x)
        if self.mask_padding and padding_mask is not None:
            x = x * keras.ops.cast(padding_mask, x.dtype)[..., None]
        x = self.dropout(x, training=training)
        if self.relative_embeddings is None:
            return x
        return x, self.relative_table()

    def relative_table(self):
        """DeBERTa's shared relative-position table [rows, hidden_size], after
        its LayerNorm (the reference's `get_rel_embedding`), in the compute
        dtype."""
        table = keras.ops.cast(self.relative_embeddings.embeddings, self.compute_dtype)
        return table if self.relative_layer_norm is None else self.relative_layer_norm(table)

    def position_ids(self, word_ids):
        """RoBERTa's position ids of `word_ids` (see `padding_idx`), int32."""
        real = keras.ops.cast(keras.ops.not_equal(word_ids, self.padding_idx), "int32")
        return keras.ops.cumsum(real, axis=1) * real + self.padding_idx

    def compute_output_shape(self, word_ids_shape, type_ids_shape=None):
        shape = tuple(word_ids_shape) + (self.hidden_size,)
        if self.relative_embeddings is None:
            return shape
        return shape, (self.relative_rows, self.hidden_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
            position_embedding=self.position_embedding,
            initializer_range=self.initializer_range,
            layer_norm_eps=self.layer_norm_eps,
            dropout=self.dropout_rate,
            padding_idx=self.padding_idx,
            relative_embeddings=self.relative_rows,
            relative_layer_norm=self.use_relative_layer_norm,
            mask_padding=self.mask_padding,
            frozen_parts=frozen_parts(self) if self.built else list(self._frozen_parts),
        )
        return config
