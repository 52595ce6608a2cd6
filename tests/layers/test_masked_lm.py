import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.layers.masked_lm import MaskedLMHead
from kzoo.models.pretrainer import masked_lm_head
from kzoo.models.encoder import bert_encoder
from tests.conftest import random_inputs


def _gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / np.sqrt(2.0)))


def _numpy_head(head, h, table):
    kernel, bias = [w.numpy().astype(np.float64) for w in head.transform.weights]
    gamma, beta = [w.numpy().astype(np.float64) for w in head.transform_layer_norm.weights]
    x = _gelu(h @ kernel + bias)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    x = (x - mean) / np.sqrt(var + head.layer_norm_eps) * gamma + beta
    return x @ table.T + head.output_bias.numpy()


@pytest.fixture
def encoder(tiny_config):
    return bert_encoder(tiny_config, dropout=0.0, attention_dropout=0.0)


def test_logits_equal_numpy_and_shapes(encoder, tiny_config):
    head = masked_lm_head(encoder)
    assert head.vocab_size == tiny_config.vocab_size and head.activation == "gelu"
    rng = np.random.default_rng(0)
    h = rng.normal(size=(2, 5, tiny_config.hidden_size)).astype("float32")
    head.build(h.shape)
    for w in head.weights:  # non-trivial transform, LayerNorm and bias
        w.assign(rng.normal(scale=0.3, size=w.shape).astype("float32"))
    table = encoder.get_layer("embeddings").word_embeddings.embeddings.numpy().astype(np.float64)
    full = head(h)
    assert full.dtype == "float32" and tuple(full.shape) == (2, 5, tiny_config.vocab_size)
    np.testing.assert_allclose(full.numpy(), _numpy_head(head, h.astype(np.float64), table), rtol=1e-4, atol=1e-4)

    positions = np.array([[4, 0, 2], [1, 1, 3]], "int32")
    gathered = head(h, positions).numpy()
    assert gathered.shape == (2, 3, tiny_config.vocab_size)
    np.testing.assert_allclose(gathered, np.take_along_axis(full.numpy(), positions[:, :, None], 1), atol=1e-5)
    assert sorted(w.path.split("/", 1)[1] for w in head.weights) == [
        "output_bias", "transform/bias", "transform/kernel", "transform_layer_norm/beta",
        "transform_layer_norm/gamma"]


def test_tied_variable_once_and_trained(encoder, tiny_config):
    head = masked_lm_head(encoder)
    inputs = {k: keras.Input((None,), dtype="int32", name=k) for k in encoder.input}
    positions = keras.Input((3,), dtype="int32", name="positions")
    logits = head(encoder(inputs)["sequence_output"], positions)
    model = keras.Model({**inputs, "positions": positions}, logits)

    table = encoder.get_layer("embeddings").word_embeddings.embeddings
    assert head.tied_variable is table
    assert sum(v is table for v in model.trainable_variables) == 1
    assert not any(v is table for v in head.weights)
    assert len(model.weights) == len({id(v) for v in model.weights})

    batch = {**random_inputs(2, 6, tiny_config.vocab_size), "positions": np.array([[1, 2, 3], [0, 1, 2]], "int32")}
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            tf.constant([[5, 6, 7], [8, 9, 10]]), model(batch)))
    grads = dict(zip([id(v) for v in model.trainable_variables], tape.gradient(loss, model.trainable_variables)))
    grad = tf.convert_to_tensor(grads[id(table)]).numpy()
    # The output projection reaches every row of the table (the input side only the used ids).
    assert np.all(np.abs(grad).sum(-1) > 0)
    assert tf.convert_to_tensor(grads[id(head.output_bias)]).numpy().any()


def test_untied_and_mismatched_errors():
    head = MaskedLMHead(vocab_size=10, hidden_size=8)
    with pytest.raises(ValueError, match="not tied"):
        head(np.ones((1, 2, 8), "float32"))
    embedding = keras.layers.Embedding(11, 8)
    embedding.build((None,))
    with pytest.raises(ValueError, match="shape"):
        head.tie(embedding)


def test_config_round_trip():
    head = MaskedLMHead(vocab_size=10, hidden_size=8, activation="relu", layer_norm_eps=1e-6, name="m")
    clone = MaskedLMHead.from_config(head.get_config())
    assert (clone.vocab_size, clone.hidden_size, clone.activation, clone.layer_norm_eps, clone.name) == (
        10, 8, "relu", 1e-6, "m")
    assert not clone.tied
