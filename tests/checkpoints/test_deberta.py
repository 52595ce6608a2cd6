"""DeBERTa-v2/v3 (family "deberta_v2") against the original Hugging Face models.

The references are tiny random-weight transformers models (every parameter moved away from its initial value),
built, saved as HF folders and run by `hf_deberta_reference.py` in a subprocess that never imports TensorFlow,
once per module: a v3-structured DebertaV2ForSequenceClassification (position_buckets 8, max_relative_positions
16: the 40-token batch runs past the bucket range), a model with the other branches (share_att_key false, c2p
only, no buckets, absolute positions, token types) and both spellings of the masked-LM head. kzoo loads each
folder (`load_pretrained`, strict) and must give the same outputs on padded batches (sentence pairs in the type
ids, which v3 ignores) within 1e-4: `sequence_output` on the whole batch, padding included (the reference
defines it there too), the ContextPooler's `pooled_output`, the classifier's logits and the masked-LM logits.
"""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.checkpoints import load_pretrained
from kzoo.checkpoints.hf import load_hf
from kzoo.checkpoints.official import load_official
from kzoo.layers.disentangled_attention import log_bucket_position
from kzoo.models import (bert_classifier, bert_encoder, enable_parameter_efficient_training, encoder_family,
                         merge_lora)
from kzoo.training.freezing import group_variables, layer_groups
from tests.conftest import write_tf1_checkpoint

TOLERANCE = 1e-4
INPUTS = ("input_word_ids", "input_mask", "input_type_ids")
MEASURED = {}  # (model, output) -> max abs difference, printed at the end of the module
ALL_TARGETS = ("query", "key", "value", "attention_output", "intermediate", "output")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """{model name: (HF folder, {inputs and reference outputs})} and the bucket tables, computed once."""
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
        pytest.skip("the Hugging Face references need transformers and torch (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("hf_deberta")
    script = os.path.join(os.path.dirname(__file__), "hf_deberta_reference.py")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, script, str(out)], env=env, timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, f"hf_deberta_reference.py failed:\n{done.stderr[-3000:]}"
    models = {name: (str(out / name), dict(np.load(out / name / "reference.npz")))
              for name in sorted(os.listdir(out)) if (out / name).is_dir()}
    models["buckets"] = (None, dict(np.load(out / "buckets.npz")))
    yield models
    print("\nmax abs differences against transformers:")
    for (model, output), diff in sorted(MEASURED.items()):
        print(f"  {model:24s} {output:32s} {diff:.2e}")


def inputs_of(ref, prefix="short_"):
    return {key: ref[prefix + key] for key in INPUTS}


def check(model, output, ours, theirs, tolerance=TOLERANCE):
    diff = float(np.abs(np.asarray(ours, "float64") - np.asarray(theirs, "float64")).max())
    MEASURED[model, output] = max(diff, MEASURED.get((model, output), 0.0))
    assert diff <= tolerance, f"{model} {output}: max abs difference {diff:.2e}"


def test_log_buckets_match_transformers(reference):
    _, tables = reference["buckets"]
    for size, top in ((8, 16), (256, 512), (256, 1024)):
        ours = np.asarray(log_bucket_position(tables["distances"], size, top))
        np.testing.assert_array_equal(ours, tables[f"buckets_{size}_{top}"], err_msg=f"buckets {size}, {top}")


@pytest.mark.parametrize("name", ["deberta_v3", "deberta_v2_unshared"])
def test_hf_folder_matches_transformers(reference, name):
    folder, ref = reference[name]
    pretrained = load_pretrained(folder)  # strict
    assert pretrained.family == "deberta_v2" and pretrained.format == "hf"
    assert encoder_family(pretrained.encoder) == "deberta_v2"
    report = pretrained.report
    if name == "deberta_v3":  # a sequence classifier's folder: the ContextPooler loads, the classifier waits
        assert report.missing == [] and report.unused == ["classifier.bias", "classifier.weight"]
        config = pretrained.config
        assert (config.position_buckets, config.relative_max_distance, config.pos_att_type, config.share_att_key,
                config.use_absolute_positions, config.type_vocab_size) == (8, 16, ("p2c", "c2p"), True, False, 0)
        assert "deberta.encoder.rel_embeddings.weight" in report.loaded
        assert "deberta.encoder.LayerNorm.weight" in report.loaded
    else:  # a DebertaV2Model: no ContextPooler in the folder, new (as DistilBERT's pre_classifier)
        assert report.missing == ["pooler/dense/kernel", "pooler/dense/bias"] and report.unused == []
        assert "encoder.layer.1.attention.self.pos_key_proj.weight" in report.loaded
    for prefix in ("short_", "long_"):
        inputs = inputs_of(ref, prefix)
        out = pretrained.encoder(inputs)
        assert len(out["encoder_outputs"]) == 2
        check(name, f"{prefix}sequence_output (all)", out["sequence_output"], ref[prefix + "sequence_output"])
        if prefix + "pooled_output" in ref:
            check(name, f"{prefix}pooled_output", out["pooled_output"], ref[prefix + "pooled_output"])
    assert inputs_of(ref, "long_")["input_word_ids"].shape[1] == 40  # past the bucket range


def test_sequence_classifier_matches_transformers(reference):
    folder, ref = reference["deberta_v3"]
    classifier = bert_classifier(load_pretrained(folder).encoder, num_classes=3)
    report = load_hf(classifier, folder, strict=True)  # now the classifier takes them
    assert report.unused == [] and report.missing == []
    for prefix in ("short_", "long_"):
        inputs = inputs_of(ref, prefix)
        check("deberta_v3", f"{prefix}classifier logits", classifier(inputs), ref[prefix + "logits"])
    # No token types in v3: the type ids are accepted and ignored (these inputs hold pairs).
    inputs = inputs_of(ref)
    assert inputs["input_type_ids"].any()
    np.testing.assert_array_equal(classifier({**inputs, "input_type_ids": 0 * inputs["input_type_ids"]}),
                                  classifier(inputs))


@pytest.mark.parametrize("name", ["deberta_mlm", "deberta_mlm_lm_head"])
def test_masked_lm_heads(reference, name):
    """DebertaV2ForMaskedLM's legacy `cls.predictions.*` and the released checkpoints' `lm_predictions.lm_head.*`
    into `bert_pretrainer`'s masked-LM head."""
    folder, ref = reference[name]
    pretrained = load_pretrained(folder, with_heads=True)
    assert pretrained.report.unused == []
    assert pretrained.report.missing == ["pooler/dense/kernel", "pooler/dense/bias"]
    check(name, "mlm_logits", pretrained.pretrainer(inputs_of(ref))["mlm_logits"], ref["short_mlm_logits"])


def test_strict_load_names_a_missing_relative_table(reference, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder, _ = reference["deberta_v3"]
    arrays = load_file(os.path.join(folder, "model.safetensors"))
    del arrays["deberta.encoder.rel_embeddings.weight"]
    save_file(arrays, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(open(os.path.join(folder, "config.json")).read())
    with pytest.raises(ValueError, match="embeddings/relative_embeddings/embeddings.*deberta/encoder/rel_embeddings"):
        load_pretrained(str(tmp_path))
    write_tf1_checkpoint(str(tmp_path / "x.ckpt"), {"deberta/embeddings/word_embeddings": np.zeros((99, 32), "f")})
    with pytest.raises(ValueError, match="deberta_v2 has no official TF1 checkpoint format"):
        load_official(load_pretrained(folder).encoder, str(tmp_path / "x.ckpt"))


def test_lora_adapters_merge_and_keras_round_trip(reference, tmp_path):
    folder, ref = reference["deberta_v3"]
    inputs = inputs_of(ref, "long_")
    plain = load_pretrained(folder).encoder(inputs)["sequence_output"]
    encoder = load_pretrained(folder, lora_rank=2, lora_targets=ALL_TARGETS, adapter_type="houlsby",
                              adapter_size=4).encoder
    np.testing.assert_allclose(encoder(inputs)["sequence_output"], plain, atol=1e-6)  # zero updates: unchanged
    # Nonzero LoRA updates: the query / key updates also project the relative table, so the merged kernels
    # compute what the LoRA model computes.
    rng = np.random.default_rng(0)
    for layer in encoder.layers:
        for lora in getattr(layer, "lora_layers", dict)().values():
            lora.lora_b.assign(rng.normal(0, 0.2, lora.lora_b.shape).astype("float32"))
    adapted = np.asarray(encoder(inputs)["sequence_output"])
    assert np.abs(adapted - plain).max() > 1e-2
    np.testing.assert_allclose(merge_lora(encoder)(inputs)["sequence_output"], adapted, atol=1e-5)
    # .keras round trip of the adapted encoder (trainable: adapters, LoRA factors, LayerNorms), and the same
    # outputs under XLA.
    trainable = sorted(v.path for v in enable_parameter_efficient_training(encoder))
    assert "embeddings/relative_layer_norm/gamma" in trainable
    assert not any("relative_embeddings" in p or p.endswith("query/kernel") for p in trainable)
    path = str(tmp_path / "deberta.keras")
    encoder.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded(inputs)["sequence_output"], adapted, atol=1e-6)
    assert sorted(v.path for v in reloaded.trainable_weights) == trainable
    compiled = tf.function(lambda x: encoder(x)["sequence_output"], jit_compile=True)
    np.testing.assert_allclose(compiled(inputs), adapted, atol=1e-5)
    short = inputs_of(ref)  # another length through the same compiled function
    np.testing.assert_allclose(compiled(short), encoder(short)["sequence_output"], atol=1e-5)


def test_freezing_groups_and_mixed_precision(reference):
    folder, ref = reference["deberta_v3"]
    pretrained = load_pretrained(folder)
    classifier = bert_classifier(pretrained.encoder, num_classes=3)
    groups = group_variables(layer_groups(classifier))
    assert list(groups) == ["embeddings", "layer_0", "layer_1", "head"]
    assert {"embeddings/relative_embeddings/embeddings", "embeddings/relative_layer_norm/gamma"} <= {
        v.path for v in groups["embeddings"]}  # the shared table goes with the embeddings
    inputs = inputs_of(ref, "long_")
    policy = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_float16")
        half = bert_encoder(pretrained.config)
    finally:
        keras.config.set_dtype_policy(policy)
    half.set_weights(pretrained.encoder.get_weights())
    out = np.asarray(half(inputs)["sequence_output"], "float32")
    assert np.isfinite(out).all()
    check("deberta_v3 (mixed_float16)", "long_sequence_output (all)", out, ref["long_sequence_output"],
          tolerance=5e-2)


def test_config_round_trips_through_hf_format(reference, tmp_path):
    folder, _ = reference["deberta_v3"]
    config = load_pretrained(folder).config
    path = config.to_json_file(tmp_path / "config.json", format="hf")
    data = json.loads(open(path).read())
    assert data["model_type"] == "deberta-v2" and data["position_biased_input"] is False
    assert data["pos_att_type"] == ["p2c", "c2p"] and data["relative_attention"] is True
    assert type(config).from_json_file(path) == config
    with pytest.raises(ValueError, match="deberta_v2 has no official config format"):
        config.to_dict("official")
