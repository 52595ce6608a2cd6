"""kzoo.tasks.classification.export_classifier_dirs (what kzoo-export-classifier runs): re-export one model_dir or
the ensemble of several as one SavedModel."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo import models
from kzoo.configs import BertConfig
from kzoo.text import BertPacker, BertTokenizer
from kzoo.training import save_model, save_tokenizer

LABELS = ["neg", "neutral", "pos"]
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "plot", "the", "was", "a", "boring",
         "great", "##s", "fine", "very"]
TEXTS = ["the film was great", "a very boring plot", "fine films", ""]


@pytest.fixture(scope="module")
def tool():
    from kzoo.tasks import classification

    return classification


def _model_dir(path, vocab, seed, **encoder_kwargs):
    keras.utils.set_random_seed(seed)
    config = BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    model = models.bert_classifier(config, num_classes=len(LABELS), **encoder_kwargs)
    for v in model.weights:  # LoRA B starts at zero: give every variable a nonzero value
        if "lora_b" in v.path:
            v.assign(np.random.default_rng(seed).normal(0, 0.1, v.shape).astype("float32"))
    save_model(model, str(path), labels=LABELS)
    save_tokenizer(str(vocab), True, str(path))
    return model


def _packed(vocab):
    tokenizer = BertTokenizer(str(vocab), lower_case=True)
    return BertPacker.from_tokenizer(tokenizer, 16, dynamic_length=True)(tokenizer(tf.constant(TEXTS)))


def _probabilities(model, packed):
    return tf.nn.softmax(model(packed, training=False)).numpy()


def test_ensemble_of_model_dirs_is_one_savedmodel(tmp_path, tool):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    members = [_model_dir(tmp_path / f"run{i}", vocab, seed=i) for i in range(3)]
    path = tool.export_classifier_dirs([str(tmp_path / f"run{i}") for i in range(3)], str(tmp_path / "export"),
                              weights=[1.0, 1.0, 2.0], max_seq_length=16)
    assert path == str(tmp_path / "export" / "1")
    packed = _packed(vocab)
    expected = sum(w * _probabilities(m, packed) for w, m in zip([0.25, 0.25, 0.5], members))
    loaded = tf.saved_model.load(path)
    served = loaded.signatures["serve_packed"](**packed)
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-6)
    by_text = loaded.signatures["serving_default"](text=tf.constant(TEXTS))
    np.testing.assert_allclose(by_text["probabilities"].numpy(), expected, atol=1e-6)
    assert [l.decode() for l in by_text["labels"].numpy()] == [LABELS[i] for i in expected.argmax(-1)]


def test_single_lora_model_is_exported_merged(tmp_path, tool):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    model = _model_dir(tmp_path / "run", vocab, seed=5, lora_rank=2)
    path = tool.export_classifier_dirs([str(tmp_path / "run")], str(tmp_path / "export"), max_seq_length=16)
    packed = _packed(vocab)
    served = tf.saved_model.load(path).signatures["serve_packed"](**packed)
    np.testing.assert_allclose(served["probabilities"].numpy(), _probabilities(model, packed), atol=1e-5)
    assert not [v for v in tf.saved_model.load(path).variables if "lora" in v.name]


def test_members_must_agree(tmp_path, tool):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    _model_dir(tmp_path / "a", vocab, seed=0)
    _model_dir(tmp_path / "b", vocab, seed=1)
    save_model(keras.models.load_model(tmp_path / "b" / "model.keras"), str(tmp_path / "b"), labels=["x", "y", "z"])
    with pytest.raises(ValueError, match="labels"):
        tool.export_classifier_dirs([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "export"))
    with pytest.raises(ValueError, match="model.keras not found"):
        tool.export_classifier_dirs([str(tmp_path / "missing")], str(tmp_path / "export"))
