"""Multi-head attention with Shaw et al.'s relative-position representations.

Shaw, Uszkoreit and Vaswani 2018, "Self-Attention with Relative Position
Representations" (NAACL): the attention logits and outputs of every head get
learned embeddings of the clipped distance between query and key.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kzoo")
class RelativeMultiHeadAttention(keras.layers.MultiHeadAttention):
    """`keras.layers.MultiHeadAttention` with relative-position representations.

    For query position i and key position j (per head, `d` = key_dim):

        a^K_ij = w^K[clip(j - i, -k, k) + k]        a^V_ij = w^V[clip(j - i, -k, k) + k]
        e_ij   = q_i . (k_j + a^K_ij) / sqrt(d)
        alpha  = softmax_j(e_ij)                     (masked keys excluded)
        z_i    = sum_j alpha_ij (v_j + a^V_ij)       (a^V only with `relative_values`)

    w^K ([2k+1, key_dim], variable `relative_key_embeddings`) and w^V
    ([2k+1, value_dim], `relative_value_embeddings`) are shared by the heads
    (and by the batch), one pair per layer, as in the paper and in MEAD's
    `MultiHeadedRelativeAttention` with `SeqScaledDotProductRelativeAttention`
    (`rpr_k`, `rpr_value_on`). Dropout on the attention probabilities applies
    to both value terms, as there.

    Differences from MEAD: the embeddings start from `relative_initializer`
    (kzoo's encoder: the block's truncated normal; MEAD: Keras' default
    uniform embedding initialiser); `value_dim` is always key_dim-sized per
    head (MEAD makes a single head d_model wide); masked logits are excluded
    by Keras' masked softmax rather than filled with -1e9 (the same outcome);
    the distance is measured between positions of one sequence (self-
    attention, as in the kzoo encoder): for cross-attention j - i would
    compare positions of two different sequences. MEAD's windowed variant
    (`windowed_ra`, attention restricted to |j - i| <= k) is not provided:
    every key stays visible, distances beyond k share the edge embeddings.

    The relative terms materialise [T, S, key_dim] gathered embeddings per
    layer (as MEAD's `make_rpr`); the work added is of the order of the
    q.k and alpha.v products themselves.

    The layer overrides `_compute_attention` only, so callers that run the
    projections themselves and call `_compute_attention` (kzoo's LoRA path in
    `TransformerEncoderBlock`) keep working unchanged.

    Args:
        max_relative_position: k >= 1: distances are clipped to [-k, k].
        relative_values: add a^V to the values too (default True).
        relative_initializer: initialiser of w^K and w^V.
        **kwargs: `keras.layers.MultiHeadAttention`'s arguments (the default
            `attention_axes` only: attention over axis 1).

    Example:
    >>> layer = RelativeMultiHeadAttention(max_relative_position=2, num_heads=2, key_dim=4)
    >>> x = keras.ops.ones((1, 5, 8))
    >>> tuple(layer(x, x).shape), tuple(layer.relative_key_embeddings.shape)
    ((1, 5, 8), (5, 4))
    """

    def __init__(self, max_relative_position, relative_values=True, relative_initializer="glorot_uniform",
                 **kwargs):
        super().__init__(**kwargs)
        k = max_relative_position
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"max_relative_position must be a positive integer, got {k!r}")
        if not isinstance(relative_values, bool):
            raise ValueError(f"relative_values must be True or False, got {relative_values!r}")
        if self._attention_axes is not None and tuple(self._attention_axes) not in ((1,), (-3,)):
            raise ValueError(f"RelativeMultiHeadAttention attends over axis 1 only, got attention_axes "
                             f"{self._attention_axes}")
        self.max_relative_position = k
        self.relative_values = relative_values
        self.relative_initializer = keras.initializers.get(relative_initializer)

    def build(self, query_shape, value_shape, key_shape=None):
        super().build(query_shape, value_shape, key_shape)
        rows = 2 * self.max_relative_position + 1
        self.relative_key_embeddings = self.add_weight(
            name="relative_key_embeddings", shape=(rows, self._key_dim), initializer=self.relative_initializer
        )
        self.relative_value_embeddings = None
        if self.relative_values:
            value_dim = self._value_dim if self._value_dim else self._key_dim
            self.relative_value_embeddings = self.add_weight(
                name="relative_value_embeddings", shape=(rows, value_dim), initializer=self.relative_initializer
            )

    def relative_indices(self, query_length, key_length):
        """int32 [query_length, key_length]: clip(j - i, -k, k) + k."""
        k = self.max_relative_position
        distance = ops.arange(key_length, dtype="int32")[None, :] - ops.arange(query_length, dtype="int32")[:, None]
        return ops.clip(distance, -k, k) + k

    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False, use_causal_mask=False):
        if len(query.shape) != 4:
            raise ValueError(f"{self.name}: expected projected [batch, length, heads, size] tensors, got rank "
                             f"{len(query.shape)}")
        if use_causal_mask:
            causal_mask = self._compute_causal_mask(query, value)
            attention_mask = causal_mask if attention_mask is None else ops.logical_and(
                ops.cast(attention_mask, "bool"), causal_mask)
        indices = self.relative_indices(ops.shape(query)[1], ops.shape(key)[1])
        query = ops.multiply(query, ops.cast(self._inverse_sqrt_key_dim, query.dtype))
        rel_keys = ops.take(ops.cast(self.relative_key_embeddings, query.dtype), indices, axis=0)  # [T, S, d]
        scores = ops.einsum("bsnh,btnh->bnts", key, query) + ops.einsum("btnh,tsh->bnts", query, rel_keys)
        scores = self._masked_softmax(scores, attention_mask)
        probs = self._dropout_layer(scores, training=training) if self._dropout > 0.0 else scores
        output = ops.einsum("bnts,bsnh->btnh", probs, value)
        if self.relative_value_embeddings is not None:
            rel_values = ops.take(ops.cast(self.relative_value_embeddings, value.dtype), indices, axis=0)
            output = output + ops.einsum("bnts,tsh->btnh", probs, rel_values)
        return output, scores

    def get_config(self):
        config = super().get_config()
        config.update(
            max_relative_position=self.max_relative_position,
            relative_values=self.relative_values,
            relative_initializer=keras.initializers.serialize(self.relative_initializer),
        )
        return config
