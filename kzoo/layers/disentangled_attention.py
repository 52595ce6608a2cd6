"""DeBERTa's disentangled self-attention over log-bucketed relative positions.

He, Liu, Gao and Chen 2021, "DeBERTa: Decoding-enhanced BERT with
Disentangled Attention" (ICLR), with the v2/v3 refinements (log buckets,
shared relative embeddings projected by each layer's query and key
projections), as Hugging Face's `DisentangledSelfAttention`
(`transformers/models/deberta_v2/modeling_deberta_v2.py`) computes them.
"""

import math

import keras
import numpy as np
from keras import ops

ATTENTION_TYPES = ("c2p", "p2c")


def log_bucket_position(relative_pos, bucket_size, max_position):
    """The reference's `make_log_bucket_position` on an int tensor of
    relative distances: |d| < bucket_size // 2 keeps d; larger distances go to
    sign(d) * (ceil(log(|d| / mid) / log((max_position - 1) / mid) * (mid - 1))
    + mid), mid = bucket_size // 2, computed in float32 as the reference does.
    Returns int32."""
    mid = bucket_size // 2
    relative_pos = ops.cast(relative_pos, "int32")
    sign = ops.sign(relative_pos)
    inside = ops.logical_and(ops.less(relative_pos, mid), ops.greater(relative_pos, -mid))
    abs_pos = ops.where(inside, mid - 1, ops.abs(relative_pos))
    ratio = ops.cast(abs_pos, "float32") / ops.cast(mid, "float32")
    log_pos = ops.ceil(ops.log(ratio) / ops.log(ops.cast((max_position - 1) / mid, "float32"))
                       * ops.cast(mid - 1, "float32")) + ops.cast(mid, "float32")
    bucket = ops.where(ops.less_equal(abs_pos, mid), ops.cast(relative_pos, "float32"),
                       log_pos * ops.cast(sign, "float32"))
    return ops.cast(bucket, "int32")


def gather_relative(scores, indices, transpose=False):
    """`scores` [batch, heads, L, R] (each position against every relative row) -> [batch, heads, T, S]:
    out[b, n, t, s] = scores[b, n, t, indices[t, s]] (L = T), or with `transpose` (the p2c term, L = S)
    out[b, n, t, s] = scores[b, n, s, indices[t, s]]. (`take_along_axis` with the [T, S] indices broadcast; on
    CPU it ran as fast as a batched `tf.gather` without XLA and faster under XLA.)"""
    if transpose:
        return ops.transpose(ops.take_along_axis(scores, ops.transpose(indices)[None, None], axis=-1), (0, 1, 3, 2))
    return ops.take_along_axis(scores, indices[None, None], axis=-1)


def relative_position_indices(query_length, key_length, span, position_buckets, max_relative_positions):
    """int32 [query_length, key_length]: the row of the relative table each (query i, key j) pair reads,
    clip(bucket(i - j) + span, 0, 2 * span - 1) (the reference's `build_relative_position` and
    `c2p_pos`; `p2c_pos` reads the same rows once transposed)."""
    distance = ops.arange(query_length, dtype="int32")[:, None] - ops.arange(key_length, dtype="int32")[None, :]
    if position_buckets > 0 and max_relative_positions > 0:
        distance = log_bucket_position(distance, position_buckets, max_relative_positions)
    return ops.clip(distance + span, 0, 2 * span - 1)


def used_rows(length, span, position_buckets, max_relative_positions):
    """(first, count): the rows of the relative table that a sequence of
    `length` reads, first .. first + count - 1 (the buckets of the distances
    -(length - 1) .. length - 1 are a contiguous, increasing range). A static
    `length` (a Python int) gives Python ints, computed in numpy float32 and
    widened by a row on each side so that a rounding difference from the
    graph's float32 log can never leave a row out; a tensor gives int32
    tensors computed as `relative_position_indices` computes them."""
    if isinstance(length, int):
        edge = max(length - 1, 0)
        if position_buckets > 0 and max_relative_positions > 0:
            mid = position_buckets // 2
            if edge > mid:
                scale = np.log(np.float32((max_relative_positions - 1) / mid))
                edge = int(np.ceil(np.log(np.float32(edge / mid)) / scale * np.float32(mid - 1))) + mid + 1
        first = min(max(span - edge, 0), 2 * span - 1)
        last = min(max(span + edge, 0), 2 * span - 1)
        return first, last - first + 1
    edge = ops.maximum(length - 1, 0)
    distance = ops.stack([-edge, edge])
    if position_buckets > 0 and max_relative_positions > 0:
        distance = log_bucket_position(distance, position_buckets, max_relative_positions)
    first, last = ops.unstack(ops.clip(distance + span, 0, 2 * span - 1), 2)
    return first, last - first + 1


@keras.saving.register_keras_serializable(package="kzoo")
class DisentangledSelfAttention(keras.layers.MultiHeadAttention):
    """DeBERTa-v2/v3 disentangled self-attention (a `keras.layers.MultiHeadAttention`).

    For query position i, key position j and head h (`d` = key_dim; `P` the
    relative embeddings, [2 * span, hidden], passed in at every call because
    all layers share them; `r(i, j) = clip(bucket(i - j) + span, 0,
    2 * span - 1)`):

        c2c_ij = q_i . k_j
        c2p_ij = q_i . Kp[r(i, j)]          Kp = P W_k + b_k   (the key projection)
        p2c_ij = k_j . Qp[r(i, j)]          Qp = P W_q + b_q   (the query projection)
        A_ij   = (c2c_ij + c2p_ij + p2c_ij) / sqrt(d * (1 + number of position terms))
        z_i    = sum_j softmax_j(A_ij masked) v_j

    `span` is `position_buckets` (or `max_relative_positions` without
    buckets); `bucket` is the reference's `make_log_bucket_position`: exact
    below position_buckets // 2, logarithmic up to `max_relative_positions`,
    and clipped to the table's edge rows beyond, so any sequence length runs.
    With `share_att_key` (v3) Kp and Qp use the layer's own key and query
    projections; otherwise the layer has `pos_key` (c2p) and `pos_query`
    (p2c) projections of its own (the reference's `pos_key_proj`,
    `pos_query_proj`). Dropout at `relative_dropout` applies to P (the
    reference's `pos_dropout`, at hidden_dropout_prob) and the usual dropout to
    the attention probabilities.

    Masking follows the reference: `attention_mask` is [batch, T, S] (the
    reference's query mask times key mask) or [batch, 1, S]; masked scores are
    set to the float32 minimum before a float32 softmax, so a row with no
    visible key (a padding query) attends uniformly, as in transformers.

    `attend` runs the layer with caller-supplied projections: kzoo's LoRA path
    (`TransformerEncoderBlock._lora_attention`) passes its query / key / value
    projections with the LoRA updates added, and they project P too, so the
    LoRA model computes what the merged kernels (`kzoo.models.merge_lora`)
    compute.

    Args:
        position_buckets: number of log buckets per direction (<= 0: none).
        max_relative_positions: the largest distance the buckets resolve
            (positive: the config's value already resolved).
        pos_att_type: the position terms, some of ("c2p", "p2c").
        share_att_key: project P with the query / key projections.
        relative_dropout: dropout on P during training.
        **kwargs: `keras.layers.MultiHeadAttention`'s arguments (self-attention
            over axis 1 only).

    Example:
    >>> layer = DisentangledSelfAttention(position_buckets=4, max_relative_positions=8, num_heads=2, key_dim=4)
    >>> x, table = keras.ops.ones((1, 12, 8)), keras.ops.ones((8, 8))
    >>> tuple(layer(x, relative_embeddings=table).shape)
    (1, 12, 8)
    """

    def __init__(self, position_buckets=256, max_relative_positions=512, pos_att_type=("p2c", "c2p"),
                 share_att_key=True, relative_dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("position_buckets", position_buckets), ("max_relative_positions", max_relative_positions)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if max_relative_positions < 1:
            raise ValueError(f"max_relative_positions must be positive (resolve -1 to max_position_embeddings "
                             f"first), got {max_relative_positions}")
        if position_buckets > 0 and (position_buckets < 2 or max_relative_positions - 1 <= position_buckets // 2):
            raise ValueError(f"position_buckets {position_buckets} needs max_relative_positions - 1 > "
                             f"position_buckets // 2, got max_relative_positions {max_relative_positions}")
        pos_att_type = tuple(pos_att_type or ())
        if any(t not in ATTENTION_TYPES for t in pos_att_type) or len(set(pos_att_type)) != len(pos_att_type):
            raise ValueError(f"pos_att_type must hold some of {list(ATTENTION_TYPES)} once each, got "
                             f"{list(pos_att_type)}")
        if not isinstance(share_att_key, bool):
            raise ValueError(f"share_att_key must be True or False, got {share_att_key!r}")
        if self._attention_axes is not None and tuple(self._attention_axes) not in ((1,), (-3,)):
            raise ValueError(f"DisentangledSelfAttention attends over axis 1 only, got attention_axes "
                             f"{self._attention_axes}")
        self.position_buckets = position_buckets
        self.max_relative_positions = max_relative_positions
        self.pos_att_type = pos_att_type
        self.share_att_key = share_att_key
        self.relative_dropout = relative_dropout
        self._relative_dropout_layer = keras.layers.Dropout(relative_dropout, dtype=self.dtype_policy)
        self.pos_key_dense = None
        self.pos_query_dense = None

    @property
    def span(self):
        """Half the rows of the relative table the layer reads (the reference's `pos_ebd_size`)."""
        return self.position_buckets if self.position_buckets > 0 else self.max_relative_positions

    @property
    def scale_factor(self):
        return 1 + len(self.pos_att_type)

    def build(self, query_shape, value_shape=None):
        super().build(query_shape, query_shape if value_shape is None else value_shape)
        if not self.share_att_key:
            common = dict(output_shape=(None, self._num_heads, self._key_dim),
                          bias_axes="de" if self._use_bias else None, **self._get_common_kwargs_for_sublayer())
            if "c2p" in self.pos_att_type:
                self.pos_key_dense = keras.layers.EinsumDense("abc,cde->abde", name="pos_key", **common)
                self.pos_key_dense.build((1, None, query_shape[-1]))
            if "p2c" in self.pos_att_type:
                self.pos_query_dense = keras.layers.EinsumDense("abc,cde->abde", name="pos_query", **common)
                self.pos_query_dense.build((1, None, query_shape[-1]))

    def relative_indices(self, query_length, key_length):
        """int32 [query_length, key_length]: the relative-table row of every (query, key) pair."""
        return relative_position_indices(query_length, key_length, self.span, self.position_buckets,
                                         self.max_relative_positions)

    def call(self, query, value=None, attention_mask=None, relative_embeddings=None, training=None):
        if value is not None and value is not query:
            raise ValueError(f"{self.name}: DisentangledSelfAttention is self-attention: call it as layer(x) or "
                             "layer(x, x)")
        return self.attend(query, relative_embeddings, attention_mask=attention_mask, training=training)

    def attend(self, hidden, relative_embeddings, attention_mask=None, training=None, project=None,
               project_output=None):
        """The attention output for `hidden` [batch, T, width].

        Args:
            hidden: the layer input.
            relative_embeddings: the shared relative table P, [2 * span (or
                more), width], already normalised.
            attention_mask: bool [batch, T, T] or [batch, 1, T], or None.
            training: dropout on P and on the probabilities when True.
            project: `f(target, x)` for target "query", "key" or "value":
                the projection to [..., heads, key_dim] (default: the layer's
                own `query_dense`, `key_dense`, `value_dense`).
            project_output: `f(context)` from [batch, T, heads, key_dim] to
                the output (default: `output_dense`).
        """
        if relative_embeddings is None:
            raise ValueError(f"{self.name}: DisentangledSelfAttention needs the shared relative_embeddings")
        if project is None:
            def project(target, x):
                return getattr(self, f"_{target}_dense")(x)
        if project_output is None:
            project_output = self._output_dense
        query = project("query", hidden)  # [B, T, N, H]
        key = project("key", hidden)
        value = project("value", hidden)
        dtype = query.dtype
        scale = ops.cast(1.0 / math.sqrt(self._key_dim * self.scale_factor), dtype)
        scores = ops.einsum("btnh,bsnh->bnts", query, key) * scale
        if self.pos_att_type:
            # Only the rows this length reads (2 * length - 1 of the 2 * span at most): the projections and the
            # position scores below cost R rows each, and short texts read few.
            length = ops.shape(query)[1]
            first, count = used_rows(length, self.span, self.position_buckets, self.max_relative_positions)
            table = ops.cast(ops.slice(relative_embeddings, (first, 0), (count, ops.shape(relative_embeddings)[1])),
                             dtype)
            table = self._relative_dropout_layer(table, training=training)[None]  # [1, R, width]
            indices = self.relative_indices(length, length) - first  # [T, S], into the rows kept
            if "c2p" in self.pos_att_type:
                pos_key = (project("key", table) if self.share_att_key else self.pos_key_dense(table))[0]  # [R, N, H]
                c2p = ops.einsum("btnh,rnh->bntr", query, pos_key)  # [B, N, T, R]
                scores = scores + gather_relative(c2p, indices) * scale
            if "p2c" in self.pos_att_type:
                pos_query = (project("query", table) if self.share_att_key else self.pos_query_dense(table))[0]
                p2c = ops.einsum("bsnh,rnh->bnsr", key, pos_query)  # [B, N, S, R]
                scores = scores + gather_relative(p2c, indices, transpose=True) * scale
        scores = ops.cast(scores, "float32")
        if attention_mask is not None:
            mask = ops.cast(attention_mask, "bool")[:, None]  # [B, 1, T or 1, S]
            scores = ops.where(mask, scores, ops.cast(-3.4028234663852886e38, "float32"))
        probs = ops.cast(ops.softmax(scores, axis=-1), dtype)
        if self._dropout > 0.0:
            probs = self._dropout_layer(probs, training=training)
        context = ops.einsum("bnts,bsnh->btnh", probs, value)
        return project_output(context)

    def compute_output_shape(self, query_shape, value_shape=None):
        if self._output_shape is None:
            return tuple(query_shape)
        return super().compute_output_shape(query_shape, query_shape if value_shape is None else value_shape)

    def get_config(self):
        config = super().get_config()
        config.update(position_buckets=self.position_buckets, max_relative_positions=self.max_relative_positions,
                      pos_att_type=list(self.pos_att_type), share_att_key=self.share_att_key,
                      relative_dropout=self.relative_dropout)
        return config
