"""bert_pretrainer: heads, checkpoint names, losses and metrics against references."""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.checkpoints import load_official_bert, load_pretrained, save_official_bert
from kzoo.data.conll import IGNORE_LABEL
from kzoo.models import bert_classifier, bert_encoder
from kzoo.models.pretrainer import (BertPretrainer, MaskedLMAccuracy, MaskedLMLoss, bert_pretrainer,
                                    compile_pretrainer, fill_mask, metric_key, pretraining_losses)
from kzoo.text import BertTokenizer
from tests.conftest import random_inputs


def _batch(vocab, batch=6, seq=12, P=4, seed=0):
    x = random_inputs(batch, seq, vocab, seed=seed, lengths=[seq - (i % 4) for i in range(batch)])
    rng = np.random.default_rng(seed)
    positions = np.sort(rng.choice(np.arange(1, seq - 4), (batch, P)), axis=1).astype("int32")
    x["masked_lm_positions"] = positions
    ids = np.take_along_axis(x["input_word_ids"], positions, axis=1)
    ids[:, -1] = IGNORE_LABEL  # a padding slot in every row
    y = {"mlm_logits": ids.astype("int32"), "nsp_logits": rng.integers(0, 2, batch).astype("int32")}
    return x, y


def test_outputs_with_and_without_positions(tiny_config):
    model = bert_pretrainer(bert_encoder(tiny_config))
    x, _ = _batch(tiny_config.vocab_size)
    out = model(x)
    assert out["mlm_logits"].shape == (6, 4, 64) and out["nsp_logits"].shape == (6, 2)
    assert out["mlm_logits"].dtype == "float32" and out["nsp_logits"].dtype == "float32"
    full = model({k: v for k, v in x.items() if k != "masked_lm_positions"})["mlm_logits"]
    assert full.shape == (6, 12, 64)
    gathered = np.take_along_axis(np.asarray(full), x["masked_lm_positions"][:, :, None], axis=1)
    np.testing.assert_allclose(gathered, out["mlm_logits"], atol=1e-5)
    mlm_only = bert_pretrainer(bert_encoder(tiny_config), nsp=False)
    assert sorted(mlm_only(x)) == ["mlm_logits"]
    # The word table is tied, not copied: it appears once among the weights.
    word_table = model.encoder.get_layer("embeddings").word_embeddings.embeddings
    assert model.masked_lm.tied_variable is word_table
    assert sum(w is word_table for w in model.weights) == 1
    assert len({id(w) for w in model.weights}) == len(model.weights)


def test_losses_and_metrics_equal_the_math(tiny_config):
    model = bert_pretrainer(bert_encoder(tiny_config))
    x, y = _batch(tiny_config.vocab_size)
    out = model(x)
    logits, labels = np.asarray(out["mlm_logits"], np.float64), y["mlm_logits"]
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    real = labels != IGNORE_LABEL
    token_ce = -np.take_along_axis(log_probs, np.where(real, labels, 0)[..., None], -1)[..., 0]
    expected_mlm = (token_ce * real).sum() / real.sum()  # official: sum(w * ce) / sum(w)
    losses = pretraining_losses()
    assert float(losses["mlm_logits"](labels, out["mlm_logits"])) == pytest.approx(expected_mlm, rel=1e-5)
    nsp = np.asarray(out["nsp_logits"], np.float64)
    nsp_lp = nsp - np.log(np.exp(nsp).sum(-1, keepdims=True))
    expected_nsp = -nsp_lp[np.arange(6), y["nsp_logits"]].mean()
    assert float(losses["nsp_logits"](y["nsp_logits"], out["nsp_logits"])) == pytest.approx(expected_nsp, rel=1e-5)

    accuracy, token_loss = MaskedLMAccuracy(), MaskedLMLoss()
    for rows in (slice(0, 2), slice(2, 6)):  # two uneven batches: token-weighted, not a mean of means
        accuracy.update_state(labels[rows], out["mlm_logits"][rows])
        token_loss.update_state(labels[rows], out["mlm_logits"][rows])
    assert float(token_loss.result()) == pytest.approx(expected_mlm, rel=1e-5)
    hits = (logits.argmax(-1) == labels) & real
    assert float(accuracy.result()) == pytest.approx(hits.sum() / real.sum())


def test_fit_under_jit_lowers_the_loss_and_reports_metrics(tiny_config):
    keras.utils.set_random_seed(1)
    model = bert_pretrainer(bert_encoder(tiny_config, seq_length=12))
    x, y = _batch(tiny_config.vocab_size, batch=8)
    compile_pretrainer(model, keras.optimizers.Adam(3e-3), jit_compile=True)
    history = model.fit(tf.data.Dataset.from_tensors((x, y)).repeat(30), epochs=1, verbose=0).history
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    assert {"mlm_logits_loss", "nsp_logits_loss", "mlm_logits_accuracy", "nsp_logits_accuracy",
            "mlm_logits_token_loss"} <= set(history)
    assert metric_key(model, "mlm", "token_loss") == "mlm_logits_token_loss"
    model.fit(tf.data.Dataset.from_tensors((x, y)).repeat(30), epochs=1, verbose=0)
    after = model.evaluate(x, y, verbose=0, return_dict=True)
    assert after["loss"] < before["loss"] < history["loss"][0]
    assert after["mlm_logits_accuracy"] > 0.5


def test_keras_round_trip_keeps_the_tie(tmp_path, tiny_config):
    model = bert_pretrainer(bert_encoder(tiny_config))
    x, y = _batch(tiny_config.vocab_size)
    compile_pretrainer(model, "adam")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "pretrainer.keras")
    loaded = keras.models.load_model(tmp_path / "pretrainer.keras")
    assert isinstance(loaded, BertPretrainer)
    for key in ("mlm_logits", "nsp_logits"):
        np.testing.assert_array_equal(model(x)[key], loaded(x)[key])
    assert loaded.masked_lm.tied_variable is loaded.encoder.get_layer("embeddings").word_embeddings.embeddings


def test_official_checkpoint_names_layouts_and_reports(tmp_path, tiny_config):
    model = bert_pretrainer(bert_encoder(tiny_config))
    x, _ = _batch(tiny_config.vocab_size)
    for w in model.weights:  # no weight at a trivial initial value
        w.assign(np.random.default_rng(len(w.path)).normal(0, 0.1, w.shape).astype("float32"))
    prefix = save_official_bert(model, tmp_path / "ckpt" / "bert_model.ckpt")
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["bert_model.ckpt.data-00000-of-00001", "bert_model.ckpt.index",
                                                     "checkpoint"]
    reader = tf.train.load_checkpoint(str(prefix))
    shapes = reader.get_variable_to_shape_map()
    assert shapes["cls/seq_relationship/output_weights"] == [2, 16]  # stored transposed, as official
    np.testing.assert_array_equal(reader.get_tensor("cls/seq_relationship/output_weights"),
                                  model.next_sentence.dense.kernel.numpy().T)
    assert shapes["cls/predictions/output_bias"] == [64]
    assert not any("adam" in n for n in shapes)

    # The official forward pass (get_masked_lm_output / get_next_sentence_output) from the stored arrays.
    encoded = model.encoder({k: x[k] for k in ("input_word_ids", "input_mask", "input_type_ids")})
    seq = np.asarray(encoded["sequence_output"], np.float64)
    pooled = np.asarray(encoded["pooled_output"], np.float64)
    t = reader.get_tensor
    h = np.take_along_axis(seq, x["masked_lm_positions"][:, :, None], axis=1)
    from scipy.special import erf
    h = h @ t("cls/predictions/transform/dense/kernel") + t("cls/predictions/transform/dense/bias")
    h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-12)
    h = h * t("cls/predictions/transform/LayerNorm/gamma") + t("cls/predictions/transform/LayerNorm/beta")
    mlm = h @ t("bert/embeddings/word_embeddings").T + t("cls/predictions/output_bias")
    nsp = pooled @ t("cls/seq_relationship/output_weights").T + t("cls/seq_relationship/output_bias")
    out = model(x)
    np.testing.assert_allclose(out["mlm_logits"], mlm, atol=1e-4)
    np.testing.assert_allclose(out["nsp_logits"], nsp, atol=1e-5)

    fresh = bert_pretrainer(bert_encoder(tiny_config))
    report = load_official_bert(fresh, tmp_path / "ckpt", strict=True)
    assert report.unused == [] and report.missing == []
    for key in ("mlm_logits", "nsp_logits"):
        np.testing.assert_array_equal(fresh(x)[key], out[key])

    classifier = bert_classifier(bert_encoder(tiny_config), num_classes=3)
    report = load_official_bert(classifier, prefix, strict=True)
    assert report.unused == sorted(n for n in shapes if n.startswith("cls/"))
    assert len(report.unused) == 7
    assert report.missing == ["classifier/logits/kernel", "classifier/logits/bias"]

    mlm_only = bert_pretrainer(bert_encoder(tiny_config), nsp=False)
    report = load_official_bert(mlm_only, prefix)
    assert report.unused == ["cls/seq_relationship/output_bias", "cls/seq_relationship/output_weights"]


def test_heads_are_new_when_the_checkpoint_has_none(minilm_official_folder):
    pretrained = load_pretrained(minilm_official_folder, with_heads=True)
    assert pretrained.pretrainer.nsp is False  # the MiniLM checkpoint has no cls/* heads
    assert len(pretrained.report.loaded) == 103
    assert all("masked_lm" in path for path in pretrained.report.missing)
    assert len(pretrained.report.missing) == 5


@pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None,
    reason="the Hugging Face reference needs transformers and torch (pip install -e '.[test]')",
)
def test_matches_hugging_face_bert_for_pretraining(tmp_path):
    vocab = 40
    inputs = random_inputs(4, 10, vocab, seed=3, lengths=[10, 7, 5, 9])
    inputs["input_word_ids"][0, :5] = [2, 5 + 3, 4, 5 + 7, 3]  # [CLS] w3 [MASK] w7 [SEP], for fill_mask
    inputs["input_mask"][0] = [1] * 5 + [0] * 5
    inputs["input_type_ids"][0] = 0
    inputs["input_word_ids"][0, 5:] = 0
    folder = tmp_path / "hf"
    np.savez(tmp_path / "in.npz", vocab_size=vocab, **inputs)
    script = os.path.join(os.path.dirname(__file__), "..", "checkpoints", "hf_pretraining_reference.py")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run([sys.executable, script, str(folder), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                   check=True, env=env, timeout=300)
    ref = np.load(tmp_path / "out.npz")

    pretrained = load_pretrained(str(folder), with_heads=True)
    model = pretrained.pretrainer
    assert model.nsp and pretrained.report.missing == []
    print("unused:", pretrained.report.unused)
    assert not any("cls." in n for n in pretrained.report.unused if "decoder" not in n)
    out = model(inputs)
    real = inputs["input_mask"].astype(bool)
    assert np.abs(np.asarray(out["mlm_logits"])[real] - ref["mlm_logits"][real]).max() < 1e-4
    np.testing.assert_allclose(out["nsp_logits"], ref["nsp_logits"], atol=1e-5)

    tokenizer = BertTokenizer(pretrained.vocab_file, lower_case=True)
    (per_mask,) = fill_mask(model, tokenizer, ["w3 [MASK] w7"], top_k=3)[0]
    probs = np.exp(ref["mlm_logits"][0, 2] - ref["mlm_logits"][0, 2].max())
    probs /= probs.sum()
    order = np.argsort(-probs)[:3]
    assert [tok for tok, _ in per_mask] == [tokenizer.vocabulary[i] for i in order]
    np.testing.assert_allclose([p for _, p in per_mask], probs[order], atol=1e-5)
