import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.models.walk import find_encoder
from kzoo.configs import BertConfig
from kzoo.export.classifier import export_classifier
from kzoo.models.classifier import bert_classifier
from kzoo.models.ensemble import LogMeanProbability, classifier_ensemble
from kzoo.text.packing import BertPacker
from kzoo.text.tokenizer import BertTokenizer
from tests.conftest import random_inputs

WORDS = ["the", "movie", "was", "great", "bad", "not", "fun", "play", "some", "jazz", "##s", "!", "."]
SENTENCES = ["The movie was great!", "not fun .", "play some jazz", "movies"]


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture
def tokenizer(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    return BertTokenizer(vocab_file=str(vocab))


def _members(vocab_size, num_classes=3, n=3):
    keras.utils.set_random_seed(0)
    members = []
    for i in range(n):
        config = BertConfig(vocab_size=vocab_size, hidden_size=8 * (i + 1), num_hidden_layers=1 + i % 2,
                            num_attention_heads=2, intermediate_size=16, max_position_embeddings=32)
        model = bert_classifier(config, num_classes=num_classes, name=f"member_{i}")
        # Confident, different members: a saturated pooler and a large output layer.
        pooler = find_encoder(model).get_layer("pooler").dense.kernel
        pooler.assign(pooler.numpy() * 100.0)
        kernel = model.get_layer("classifier").dense.kernel
        kernel.assign(np.random.default_rng(i).normal(scale=5.0, size=kernel.shape).astype("float32"))
        members.append(model)
    return members


def test_softmax_of_output_is_weighted_mean_probability(tiny_config):
    members = _members(tiny_config.vocab_size)
    inputs = random_inputs(4, 9, tiny_config.vocab_size)
    probs = np.stack([_softmax(m(inputs, training=False).numpy().astype(np.float64)) for m in members])
    assert probs.max() > 0.999  # confident members: the log-space combination matters
    for weights, w in ((None, np.ones(3) / 3), ([3.0, 1.0, 0.0], np.array([0.75, 0.25, 0.0]))):
        out = classifier_ensemble(members, weights)(inputs, training=False)
        assert out.dtype == "float32" and np.isfinite(out.numpy()).all()
        np.testing.assert_allclose(_softmax(out.numpy().astype(np.float64)), np.tensordot(w, probs, 1), atol=1e-6)
        # Already normalised: exp(output) sums to one.
        np.testing.assert_allclose(np.exp(out.numpy()).sum(-1), 1.0, atol=1e-5)


def test_errors(tiny_config):
    a, b = _members(tiny_config.vocab_size, n=2)
    c = bert_classifier(tiny_config, num_classes=2, name="two_classes")
    with pytest.raises(ValueError, match="same number of classes"):
        classifier_ensemble([a, c])
    with pytest.raises(ValueError, match="distinct names"):
        classifier_ensemble([a, bert_classifier(tiny_config, num_classes=3, name="member_0")])
    with pytest.raises(ValueError, match="weights"):
        classifier_ensemble([a, b], weights=[1.0])
    with pytest.raises(ValueError, match="non-negative"):
        classifier_ensemble([a, b], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="at least one"):
        classifier_ensemble([])


def test_export_and_keras_round_trip(tmp_path, tokenizer):
    members = _members(tokenizer.vocab_size)
    ensemble = classifier_ensemble(members, weights=[1.0, 2.0, 1.0])
    packed = BertPacker.from_tokenizer(tokenizer, 16)(tokenizer(tf.constant(SENTENCES)))
    w = np.array([0.25, 0.5, 0.25])
    want = np.tensordot(w, np.stack([_softmax(m(packed, training=False).numpy().astype(np.float64))
                                     for m in members]), 1)

    path = export_classifier(ensemble, tokenizer, ["neg", "neu", "pos"], tmp_path / "ensemble", seq_length=16)
    loaded = tf.saved_model.load(path)
    np.testing.assert_allclose(loaded.signatures["serve_packed"](**packed)["probabilities"].numpy(), want, atol=1e-5)
    out = loaded.signatures["serving_default"](text=tf.constant(SENTENCES))
    np.testing.assert_allclose(out["probabilities"].numpy(), want, atol=1e-5)
    assert out["label_ids"].numpy().tolist() == want.argmax(-1).tolist()

    file = str(tmp_path / "ensemble.keras")
    ensemble.save(file)
    restored = keras.models.load_model(file)
    assert isinstance(restored.get_layer("log_mean_probability"), LogMeanProbability)
    assert restored.get_layer("log_mean_probability").member_weights == [0.25, 0.5, 0.25]
    assert [l.name for l in restored.layers if isinstance(l, keras.Model)] == ["member_0", "member_1", "member_2"]
    np.testing.assert_allclose(restored(packed, training=False).numpy(), ensemble(packed, training=False).numpy(),
                               atol=1e-6)
