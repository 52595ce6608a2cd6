"""DeBERTa's attention reads only the relative-table rows a length needs (kzoo.layers.disentangled_attention).

Parity with transformers' DebertaV2Model is in tests/checkpoints/test_deberta.py; here: the row range is right
for static and dynamic lengths, and a layer called with either gives what it gives over the whole table."""

import numpy as np
import pytest
import tensorflow as tf

from kzoo.layers.disentangled_attention import DisentangledSelfAttention, relative_position_indices, used_rows

SETTINGS = [(256, 512), (8, 16), (4, 64), (0, 24)]  # (position_buckets, max_relative_positions); 0: no buckets


@pytest.mark.parametrize("buckets, max_relative", SETTINGS)
def test_used_rows_cover_exactly_the_rows_read(buckets, max_relative):
    span = buckets if buckets > 0 else max_relative
    dynamic = tf.function(lambda n: used_rows(n, span, buckets, max_relative),
                          input_signature=[tf.TensorSpec([], tf.int32)])
    for length in [1, 2, 3, 5, 9, 17, 31, 64, 129, 255, 300, 513, 700]:
        indices = relative_position_indices(length, length, span, buckets, max_relative).numpy()
        lo, hi = indices.min(), indices.max()
        first, count = (int(v) for v in dynamic(tf.constant(length)))
        assert (first, first + count - 1) == (lo, hi), length
        first, count = used_rows(length, span, buckets, max_relative)  # static: may widen by one row each side
        assert isinstance(first, int) and first <= lo and hi <= first + count - 1 and count <= hi - lo + 3, length
        assert 0 <= first and first + count <= 2 * span


def test_static_and_dynamic_lengths_give_the_whole_table_result():
    layer = DisentangledSelfAttention(position_buckets=4, max_relative_positions=16, num_heads=2, key_dim=4)
    rng = np.random.default_rng(0)
    table = tf.constant(rng.normal(size=(8, 8)), tf.float32)
    layer(tf.zeros([1, 3, 8]), relative_embeddings=table)
    for w in layer.weights:
        w.assign(rng.normal(scale=0.5, size=w.shape))
    dynamic = tf.function(lambda x, m: layer(x, attention_mask=m, relative_embeddings=table),
                          input_signature=[tf.TensorSpec([None, None, 8]), tf.TensorSpec([None, None, None], tf.bool)])

    def whole_table(x, mask):
        """The attention over all 2 * span rows (what the layer computed before it sliced), from its weights."""
        q, k, v = (getattr(layer, f"_{t}_dense")(x) for t in ("query", "key", "value"))
        scale = 1 / np.sqrt(4 * 3)
        idx = relative_position_indices(x.shape[1], x.shape[1], 4, 4, 16)
        pos_k, pos_q = layer._key_dense(table[None])[0], layer._query_dense(table[None])[0]
        c2p = tf.experimental.numpy.take_along_axis(tf.einsum("btnh,rnh->bntr", q, pos_k), idx[None, None], -1)
        p2c = tf.experimental.numpy.take_along_axis(tf.einsum("bsnh,rnh->bnsr", k, pos_q),
                                                    tf.transpose(idx)[None, None], -1)
        scores = (tf.einsum("btnh,bsnh->bnts", q, k) + c2p + tf.transpose(p2c, (0, 1, 3, 2))) * scale
        scores = tf.where(mask[:, None], scores, -3.4028234663852886e38)
        return layer._output_dense(tf.einsum("bnts,bsnh->btnh", tf.nn.softmax(scores), v))

    for length in (1, 3, 7, 20, 40):  # 20 and 40 go past the buckets' exact range and the 16 positions
        x = tf.constant(rng.normal(size=(2, length, 8)), tf.float32)
        real = np.arange(length)[None] < np.array([[length], [max(length // 2, 1)]])
        mask = tf.constant(real[:, None, :] & real[:, :, None])
        expected = whole_table(x, mask)
        np.testing.assert_allclose(layer(x, attention_mask=mask, relative_embeddings=table), expected, atol=1e-5)
        np.testing.assert_allclose(dynamic(x, mask), expected, atol=1e-5)
