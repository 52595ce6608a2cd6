"""A BERT encoder with Shaw et al.'s relative positions (`BertConfig.max_relative_position`): any sequence
length without the absolute table, and the official checkpoint round trip of its relative embeddings."""

import numpy as np
import pytest
import tensorflow as tf

from kzoo.checkpoints import load_official_bert, load_pretrained, save_official_bert
from kzoo.configs import BertConfig
from kzoo.layers import RelativeMultiHeadAttention
from kzoo.models import bert_encoder, bert_pretrainer
from tests.conftest import random_inputs


def _config(**changes):
    fields = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
                  max_position_embeddings=8, max_relative_position=3, use_absolute_positions=False,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    fields.update(changes)
    return BertConfig(**fields)


def _perturb(model, seed=0):
    rng = np.random.default_rng(seed)
    for v in model.weights:
        v.assign(np.asarray(v) + 0.1 * rng.standard_normal(v.shape).astype(v.dtype))


REL_KEYS = "bert/encoder/layer_{}/attention/self/relative_positions_keys/embeddings"
REL_VALUES = "bert/encoder/layer_{}/attention/self/relative_positions_values/embeddings"


def test_runs_longer_than_max_position_embeddings():
    config = _config()
    encoder = bert_encoder(config)
    embeddings = encoder.get_layer("embeddings")
    assert embeddings.position_embedding == "none" and embeddings.position_embeddings is None
    assert not [v for v in encoder.weights if "position_embeddings" in v.path]
    relative = sorted(v.path for v in encoder.weights if "relative" in v.path)
    assert relative == [f"transformer_layer_{i}/attention/relative_{kind}_embeddings"
                        for i in range(2) for kind in ("key", "value")]
    inputs = random_inputs(3, 20, config.vocab_size, lengths=[20, 13, 5])  # 20 > max_position_embeddings 8
    out = encoder(inputs)
    assert tuple(out["sequence_output"].shape) == (3, 20, 16)
    assert np.isfinite(np.asarray(out["sequence_output"])).all()
    static = bert_encoder(config, seq_length=20)  # a static length past the table too
    static.set_weights(encoder.get_weights())
    np.testing.assert_allclose(static(inputs)["sequence_output"], out["sequence_output"], atol=1e-5)
    # padding never changes real positions: the 13-token row alone
    alone = {k: v[1:2, :13] for k, v in inputs.items()}
    np.testing.assert_allclose(encoder(alone)["sequence_output"][0], out["sequence_output"][1, :13], atol=1e-5)


def test_relative_with_absolute_table_and_keys_only():
    config = _config(use_absolute_positions=True, relative_position_values=False)
    encoder = bert_encoder(config)
    assert encoder.get_layer("embeddings").position_embedding == "learned"
    attention = encoder.get_layer("transformer_layer_0").attention
    assert isinstance(attention, RelativeMultiHeadAttention) and attention.relative_value_embeddings is None
    with pytest.raises(ValueError, match="max_position_embeddings"):
        bert_encoder(config, seq_length=20)


def test_position_embedding_argument_must_agree_with_the_config():
    with pytest.raises(ValueError, match="use_absolute_positions"):
        bert_encoder(_config(), position_embedding="learned")
    with pytest.raises(ValueError, match="use_absolute_positions"):
        bert_encoder(_config(use_absolute_positions=True), position_embedding="none")
    plain = bert_encoder(_config(max_relative_position=0, use_absolute_positions=True))
    assert not any(isinstance(getattr(l, "attention", None), RelativeMultiHeadAttention) for l in plain.layers)


def test_official_checkpoint_round_trip(tmp_path):
    config = _config()
    pretrainer = bert_pretrainer(bert_encoder(config))
    _perturb(pretrainer)
    folder = tmp_path / "relative_bert"
    prefix = save_official_bert(pretrainer, str(folder / "bert_model.ckpt"))
    config.to_json_file(folder / "bert_config.json")
    (folder / "vocab.txt").write_text("".join(f"[unused{i}]\n" for i in range(config.vocab_size)))
    shapes = dict(tf.train.list_variables(prefix))
    for i in range(2):
        assert shapes[REL_KEYS.format(i)] == [7, 4] and shapes[REL_VALUES.format(i)] == [7, 4]
    assert "bert/embeddings/position_embeddings" not in shapes

    inputs = random_inputs(2, 12, config.vocab_size)
    expected = pretrainer.get_layer("bert_encoder")(inputs)["sequence_output"]
    pretrained = load_pretrained(str(folder), strict=True)
    assert pretrained.config == config and pretrained.family == "bert"
    assert pretrained.report.missing == [] and pretrained.report.unused == [
        n for n in sorted(shapes) if n.startswith("cls/")]
    assert set(pretrained.report.loaded) >= {REL_KEYS.format(0), REL_VALUES.format(1)}
    np.testing.assert_allclose(pretrained.encoder(inputs)["sequence_output"], expected, atol=1e-5)

    fresh = bert_pretrainer(bert_encoder(config))
    report = load_official_bert(fresh, prefix, strict=True)
    assert report.missing == [] and report.unused == []
    for ours, theirs in zip(fresh.weights, pretrainer.weights):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_plain_checkpoint_into_relative_encoder_reports_the_relative_embeddings(tmp_path):
    plain = bert_encoder(_config(max_relative_position=0, use_absolute_positions=True))
    prefix = save_official_bert(plain, str(tmp_path / "bert_model.ckpt"))
    relative = bert_encoder(_config(use_absolute_positions=True))
    report = load_official_bert(relative, prefix)
    expected = [f"transformer_layer_{i}/attention/relative_{kind}_embeddings" for i in range(2)
                for kind in ("key", "value")]
    assert sorted(report.missing) == expected and report.unused == []
    with pytest.raises(ValueError, match="strict load") as e:
        load_official_bert(relative, prefix, strict=True)
    assert all(name in str(e.value) for name in expected + [REL_KEYS.format(0), REL_VALUES.format(1)])
    # without the absolute table, the checkpoint's position table is unused
    report = load_official_bert(bert_encoder(_config()), prefix)
    assert report.unused == ["bert/embeddings/position_embeddings"] and len(report.missing) == 4
