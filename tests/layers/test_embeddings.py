import numpy as np
import pytest

from kzoo.layers import BertEmbeddings


def _layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_sum_of_tables_then_layer_norm():
    layer = BertEmbeddings(vocab_size=20, hidden_size=8, max_position_embeddings=10, layer_norm_eps=1e-12)
    ids = np.array([[1, 2, 3, 0], [4, 5, 6, 7]], "int32")
    types = np.array([[0, 0, 1, 1], [1, 1, 1, 0]], "int32")
    out = np.asarray(layer(ids, types))
    word = np.asarray(layer.word_embeddings.embeddings, "float64")
    seg = np.asarray(layer.token_type_embeddings.embeddings, "float64")
    pos = np.asarray(layer.position_embeddings.weights[0], "float64")
    want = _layer_norm(word[ids] + seg[types] + pos[None, :4], np.asarray(layer.layer_norm.gamma),
                       np.asarray(layer.layer_norm.beta), 1e-12)
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_sinusoidal_positions_have_no_table_and_any_length():
    layer = BertEmbeddings(vocab_size=20, hidden_size=8, max_position_embeddings=4, position_embedding="sinusoidal")
    out = layer(np.ones((1, 9), "int32"), np.zeros((1, 9), "int32"))
    assert out.shape == (1, 9, 8)
    assert len(layer.weights) == 5 - 1  # word, type, gamma, beta: no position table
    # Positions change the output: two equal ids at different positions differ.
    assert np.abs(np.asarray(out)[0, 0] - np.asarray(out)[0, 5]).max() > 1e-3


def test_serialisation_round_trip():
    layer = BertEmbeddings(vocab_size=20, hidden_size=8, position_embedding="sinusoidal", dropout=0.2)
    clone = BertEmbeddings.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_rejects_unknown_position_embedding():
    with pytest.raises(ValueError, match="position_embedding"):
        BertEmbeddings(vocab_size=2, hidden_size=2, position_embedding="rotary")


def test_no_segment_table_ignores_type_ids():
    layer = BertEmbeddings(vocab_size=20, hidden_size=8, type_vocab_size=0)
    ids = np.array([[1, 2, 3]], "int32")
    out = np.asarray(layer(ids, np.array([[0, 1, 5]], "int32")))
    np.testing.assert_array_equal(out, layer(ids, None))
    assert layer.token_type_embeddings is None and len(layer.weights) == 4  # word, position, gamma, beta
    with pytest.raises(ValueError, match="type_vocab_size"):
        BertEmbeddings(vocab_size=2, hidden_size=2, type_vocab_size=-1)


def test_roberta_positions_from_the_padding_id():
    layer = BertEmbeddings(vocab_size=20, hidden_size=8, max_position_embeddings=10, type_vocab_size=1,
                           padding_idx=1, layer_norm_eps=1e-5)
    ids = np.array([[0, 5, 6, 2, 1, 1]], "int32")
    out = np.asarray(layer(ids, np.zeros_like(ids)))
    word = np.asarray(layer.word_embeddings.embeddings, "float64")
    seg = np.asarray(layer.token_type_embeddings.embeddings, "float64")
    pos = np.asarray(layer.position_embeddings.weights[0], "float64")
    positions = np.array([2, 3, 4, 5, 1, 1])  # padding_idx + 1, ...; the pad id itself at padding_idx
    want = _layer_norm(word[ids] + seg[0] + pos[positions][None], np.asarray(layer.layer_norm.gamma),
                       np.asarray(layer.layer_norm.beta), 1e-5)
    np.testing.assert_allclose(out, want, atol=1e-5)
    clone = BertEmbeddings.from_config(layer.get_config())
    assert clone.padding_idx == 1 and clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="padding_idx"):
        BertEmbeddings(vocab_size=2, hidden_size=2, padding_idx=1, position_embedding="sinusoidal")
