"""ALBERT, ELECTRA, RoBERTa, XLM-R and DistilBERT against the original Hugging Face models.

The references are tiny random-weight transformers models (every parameter moved away from its initial
value), built, saved as HF folders and run by `hf_family_reference.py` in a subprocess that never imports
TensorFlow, once per session. kzoo loads each folder (`load_pretrained`) and, for ALBERT and ELECTRA, an
official-format TF1 checkpoint written from the same weights under google-research/albert's and
/electra's names (the renaming below is written from those repositories' code, independently of kzoo's
maps), and must give the same outputs on a padded batch (sentence pairs where the family has token types)
within 1e-4: `sequence_output` on the whole batch, padding included (the reference defines it there too),
the pooled output where the family has one, and the heads.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from kzoo.checkpoints import load_pretrained
from kzoo.checkpoints.hf import load_hf
from kzoo.checkpoints.official import load_official
from kzoo.configs import BertConfig
from kzoo.models import ElectraPretrainer, bert_classifier, enable_parameter_efficient_training, merge_lora
from tests.conftest import write_tf1_checkpoint

TOLERANCE = 1e-4
INPUTS = ("input_word_ids", "input_mask", "input_type_ids")
WORDPIECE = ("electra", "electra_generator", "distilbert", "distilbert_base", "distilbert_mlm")
MEASURED = {}  # (model, output) -> max abs difference, printed at the end of the module


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """{model name: (HF folder, {inputs and reference outputs})}, computed once."""
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
        pytest.skip("the Hugging Face references need transformers and torch (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("hf_families")
    script = os.path.join(os.path.dirname(__file__), "hf_family_reference.py")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, script, str(out)], env=env, timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, f"hf_family_reference.py failed:\n{done.stderr[-3000:]}"
    models = {}
    for name in sorted(os.listdir(out)):
        folder = os.path.join(out, name)
        if name in WORDPIECE:  # the WordPiece families' folders carry a vocab.txt
            with open(os.path.join(folder, "vocab.txt"), "w") as f:
                f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(94)]))
        models[name] = folder, dict(np.load(os.path.join(folder, "reference.npz")))
    yield models
    print("\nmax abs differences against transformers:")
    for (model, output), diff in sorted(MEASURED.items()):
        print(f"  {model:28s} {output:28s} {diff:.2e}")


def inputs_of(ref):
    return {key: ref[key] for key in INPUTS}


def check(model, output, ours, theirs):
    diff = float(np.abs(np.asarray(ours, "float64") - np.asarray(theirs, "float64")).max())
    MEASURED[model, output] = max(diff, MEASURED.get((model, output), 0.0))
    assert diff <= TOLERANCE, f"{model} {output}: max abs difference {diff:.2e}"


def hf_arrays(folder):
    from safetensors.numpy import load_file

    return load_file(os.path.join(folder, "model.safetensors"))


# ------------------------------------------------------------------ official TF1 names, written independently
def albert_official_name(hf_name):
    """google-research/albert's name for a HF ALBERT weight: the inverse of the renames in transformers'
    `load_tf_weights_in_albert` (from modeling.py's variable scopes), and whether to transpose."""
    name = hf_name.replace("albert.", "bert.", 1) if hf_name.startswith("albert.") else hf_name
    for hf, tf in (("predictions.dense.", "cls.predictions.transform.dense."),
                   ("predictions.LayerNorm.", "cls.predictions.transform.LayerNorm."),
                   ("predictions.bias", "cls.predictions.output_bias"),
                   ("sop_classifier.classifier.weight", "cls.seq_relationship.output_weights"),
                   ("sop_classifier.classifier.bias", "cls.seq_relationship.output_bias"),
                   ("bert.pooler.", "bert.pooler.dense."),
                   ("albert_layer_groups.", "transformer.group_"), ("albert_layers.", "inner_group_"),
                   ("attention.query", "attention_1.self.query"), ("attention.key", "attention_1.self.key"),
                   ("attention.value", "attention_1.self.value"), ("attention.dense", "attention_1.output.dense"),
                   ("attention.LayerNorm", "LayerNorm"), ("full_layer_layer_norm", "LayerNorm_1"),
                   ("ffn_output.", "ffn_1.intermediate.output.dense."), ("ffn.", "ffn_1.intermediate.dense.")):
        name = name.replace(hf, tf)
    name = re.sub(r"(group|inner_group)_(\d+)\.", r"\1_\2/", name).replace(".", "/")
    if "LayerNorm" in name:
        return name.replace("/weight", "/gamma").replace("/bias", "/beta"), False
    if name.endswith("_embeddings/weight"):
        return name[: -len("/weight")], False
    if name.endswith("output_weights"):
        return name, False  # [2, hidden] in both
    return name.replace("/weight", "/kernel"), name.endswith("/weight")


def electra_official_name(hf_name, generator=False):
    """google-research/electra's name for a HF ELECTRA weight (the inverse of transformers'
    `load_tf_weights_in_electra`); the generator's embeddings are the discriminator's (None)."""
    name = hf_name
    if generator:
        if name.startswith("electra.embeddings."):
            return None
        name = name.replace("electra.", "generator.", 1).replace("generator_lm_head.bias",
                                                                 "generator_predictions.output_bias")
    name = name.replace("dense_prediction", "dense_1")
    name = re.sub(r"\.layer\.(\d+)\.", r".layer_\1.", name).replace(".", "/")
    if "LayerNorm" in name:
        return name.replace("/weight", "/gamma").replace("/bias", "/beta"), False
    if name.endswith("_embeddings/weight"):
        return name[: -len("/weight")], False
    return name.replace("/weight", "/kernel"), name.endswith("/weight")


def write_official(folder, arrays, rename, extras=True):
    """Writes `arrays` renamed by `rename` (-> (name, transpose) or None) as a TF1 checkpoint, with
    optimizer slots and a global step as pretraining leaves them. Returns {official name: array}."""
    official = {}
    for hf_name, array in arrays.items():
        renamed = rename(hf_name)
        if renamed is not None:
            name, transpose = renamed
            official[name] = np.ascontiguousarray(array.T if transpose else array)
    stored = dict(official)
    if extras:
        stored["global_step"] = np.array(1000, "int64")
        first = sorted(official)[0]
        stored[f"{first}/adam_m"] = np.zeros_like(official[first])
    os.makedirs(folder, exist_ok=True)
    write_tf1_checkpoint(os.path.join(folder, "model.ckpt-best"), stored)
    return official


def official_albert_folder(tmp_path, hf_folder):
    config = json.load(open(os.path.join(hf_folder, "config.json")))
    official = {key: config[key] for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                             "intermediate_size", "hidden_dropout_prob",
                                             "attention_probs_dropout_prob", "max_position_embeddings",
                                             "type_vocab_size", "initializer_range", "embedding_size",
                                             "num_hidden_groups", "inner_group_num")}
    official.update(hidden_act="gelu", net_structure_type=0, gap_size=0, num_memory_blocks=0, down_scale_factor=1)
    folder = tmp_path / "albert_official"
    names = write_official(folder, hf_arrays(hf_folder), albert_official_name)
    (folder / "albert_config.json").write_text(json.dumps(official))  # google-research/albert's keys
    return str(folder), names


def official_electra_folder(tmp_path, reference, config_file=True):
    """An official ELECTRA pretraining checkpoint: discriminator, its head and the generator."""
    disc_folder, _ = reference["electra"]
    gen_folder, _ = reference["electra_generator"]
    folder = tmp_path / "electra_official"
    arrays = {**{("d", k): v for k, v in hf_arrays(disc_folder).items()},
              **{("g", k): v for k, v in hf_arrays(gen_folder).items()}}
    names = write_official(folder, arrays, lambda key: electra_official_name(key[1], generator=key[0] == "g"))
    (folder / "vocab.txt").write_text(open(os.path.join(disc_folder, "vocab.txt")).read())
    if config_file:  # google-research/electra ships none: a bert_config.json-style file plus embedding_size
        config = json.load(open(os.path.join(disc_folder, "config.json")))
        keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
                "type_vocab_size", "initializer_range", "embedding_size")
        (folder / "bert_config.json").write_text(json.dumps({key: config[key] for key in keys}))
    return str(folder), names


# ------------------------------------------------------------------------------------------------- tests
FAMILY = {"albert": "albert", "albert_2_groups": "albert", "albert_2_inner": "albert", "electra": "electra",
          "roberta": "roberta", "xlm_roberta": "xlm_roberta", "distilbert": "distilbert"}


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_hf_folder_matches_transformers(reference, name):
    folder, ref = reference[name]
    pretrained = load_pretrained(folder)  # strict
    assert pretrained.family == FAMILY[name] and pretrained.format == "hf"
    assert pretrained.report.missing == []
    assert (pretrained.vocab_file is not None) == (name in WORDPIECE)
    if name not in WORDPIECE:  # these folders hold weights only: the tokenizer, asked for, names what is missing
        with pytest.raises(ValueError, match="which the folder lacks"):
            pretrained.tokenizer
    out = pretrained.encoder(inputs_of(ref))
    assert len(out["encoder_outputs"]) == pretrained.config.num_hidden_layers
    check(name, "sequence_output (all)", out["sequence_output"], ref["sequence_output"])
    if "pooled_output" in ref:
        check(name, "pooled_output", out["pooled_output"], ref["pooled_output"])
    if name == "electra":  # no pooler: the first token's hidden state
        np.testing.assert_array_equal(out["pooled_output"], np.asarray(out["sequence_output"])[:, 0])
        assert sorted(pretrained.report.unused) == sorted(
            f"discriminator_predictions.{n}" for n in ("dense.bias", "dense.weight", "dense_prediction.bias",
                                                       "dense_prediction.weight"))


@pytest.mark.parametrize("name", ["albert", "albert_2_groups"])
def test_official_albert_checkpoint_matches_transformers(reference, tmp_path, name):
    hf_folder, ref = reference[name]
    folder, names = official_albert_folder(tmp_path, hf_folder)
    pretrained = load_pretrained(folder, with_heads=True)  # strict; the SOP head is in the checkpoint
    assert pretrained.family == "albert" and pretrained.format == "official"
    assert pretrained.config.hidden_act == "gelu_new"  # google-research/albert's "gelu" is the tanh form
    assert pretrained.vocab_file is None and pretrained.lower_case
    assert sorted(pretrained.report.loaded) == sorted(names)
    assert pretrained.report.missing == []
    assert pretrained.report.unused == [f"{sorted(names)[0]}/adam_m", "global_step"]
    out = pretrained.encoder(inputs_of(ref))
    check(name + " (official)", "sequence_output (all)", out["sequence_output"], ref["sequence_output"])
    check(name + " (official)", "pooled_output", out["pooled_output"], ref["pooled_output"])
    heads = pretrained.pretrainer(inputs_of(ref))
    check(name + " (official)", "mlm_logits", heads["mlm_logits"], ref["mlm_logits"])
    check(name + " (official)", "sop_logits", heads["nsp_logits"], ref["sop_logits"])


def test_albert_pretraining_heads_from_hf_folder(reference):
    folder, ref = reference["albert"]
    pretrained = load_pretrained(folder, with_heads=True)
    assert pretrained.report.unused == [] and pretrained.report.missing == []
    heads = pretrained.pretrainer(inputs_of(ref))
    check("albert", "mlm_logits", heads["mlm_logits"], ref["mlm_logits"])
    check("albert", "sop_logits", heads["nsp_logits"], ref["sop_logits"])


def test_albert_shares_one_set_of_variables(reference):
    folder, _ = reference["albert_2_groups"]
    encoder = load_pretrained(folder).encoder
    weights = encoder.weights
    assert len({id(v) for v in weights}) == len(weights)
    # embeddings (3 tables + LayerNorm) + projection + 2 groups x 16 + pooler: 3 layers, 2 sets of block variables
    assert len(weights) == 5 + 2 + 2 * 16 + 2
    assert sorted(l.name for l in encoder.layers if l.name.startswith("transformer_")) == [
        "transformer_group_0_inner_0", "transformer_group_1_inner_0"]


def test_official_electra_checkpoint_matches_transformers_and_reports_heads_unused(reference, tmp_path):
    _, ref = reference["electra"]
    folder, names = official_electra_folder(tmp_path, reference)
    pretrained = load_pretrained(folder)  # strict; the encoder alone
    assert pretrained.family == "electra" and pretrained.format == "official"
    assert pretrained.config.embedding_size == 16 and pretrained.vocab_file.endswith("vocab.txt")
    encoder_names = sorted(n for n in names if n.startswith("electra/"))
    assert "electra/embeddings_project/kernel" in encoder_names
    assert sorted(pretrained.report.loaded) == encoder_names
    assert pretrained.report.missing == []
    unused = pretrained.report.unused
    assert sorted(unused) == sorted([n for n in names if not n.startswith("electra/")]
                                    + [f"{sorted(names)[0]}/adam_m", "global_step"])
    assert any(n.startswith("generator/encoder/layer_0/") for n in unused)
    assert "discriminator_predictions/dense_1/kernel" in unused and "generator_predictions/output_bias" in unused
    out = pretrained.encoder(inputs_of(ref))
    check("electra (official)", "sequence_output (all)", out["sequence_output"], ref["sequence_output"])


def test_electra_pretrainer_continues_from_official_checkpoint(reference, tmp_path):
    _, ref = reference["electra"]
    _, gen_ref = reference["electra_generator"]
    folder, names = official_electra_folder(tmp_path, reference)
    pretrained = load_pretrained(folder, with_heads=True)
    model = pretrained.pretrainer
    assert isinstance(model, ElectraPretrainer) and model.discriminator is pretrained.encoder
    assert (model.generator_hidden_size, model.generator_num_layers, model.generator_num_heads,
            model.generator_intermediate_size) == (8, 1, 1, 24)
    assert sorted(pretrained.report.loaded) == sorted(names)  # generator, discriminator and both heads
    assert pretrained.report.unused == [f"{sorted(names)[0]}/adam_m", "global_step"]
    assert all("seed" in path for path in pretrained.report.missing)  # only the sampling seed is not a weight
    inputs = inputs_of(ref)
    positions = np.array([[1, 3, 5], [2, 4, 0], [1, 2, 8], [6, 0, 0]], "int32")
    logits = model.generator({**inputs, "masked_lm_positions": positions})
    check("electra (official)", "generator mlm_logits", logits,
          np.take_along_axis(gen_ref["mlm_logits"], positions[:, :, None], axis=1))
    sequence = model.discriminator(inputs)["sequence_output"]
    rtd = np.asarray(model.rtd_logit(model.rtd_dense(sequence)))[..., 0]
    check("electra (official)", "discriminator rtd_logits", rtd, ref["rtd_logits"])
    # ... and it trains on: one step of the ELECTRA objective from the loaded weights.
    model.compile(optimizer="adam")
    labels = {"mlm_logits": np.where(positions > 0, 7, -100).astype("int32")}
    loss = model.train_on_batch({**inputs, "masked_lm_positions": positions}, labels, return_dict=True)["loss"]
    assert np.isfinite(loss)


def test_electra_config_from_checkpoint_alone(reference, tmp_path):
    """ELECTRA's archives hold no config: sizes from the shapes, heads by ELECTRA's hidden // 64 rule."""
    folder, _ = official_electra_folder(tmp_path, reference, config_file=False)
    pretrained = load_pretrained(folder)
    config = pretrained.config
    assert (config.family, config.vocab_size, config.embedding_size, config.hidden_size, config.num_hidden_layers,
            config.intermediate_size, config.max_position_embeddings, config.type_vocab_size,
            config.num_attention_heads) == ("electra", 99, 16, 32, 2, 48, 40, 2, 1)
    assert pretrained.report.missing == []


def test_distilbert_sequence_classifier_matches_transformers(reference):
    folder, ref = reference["distilbert"]
    pretrained = load_pretrained(folder)
    assert "pre_classifier.weight" in pretrained.report.loaded  # the encoder's pooled_output dense
    assert pretrained.report.unused == ["classifier.bias", "classifier.weight"]
    classifier = bert_classifier(pretrained.encoder, num_classes=3)
    report = load_hf(classifier, folder, strict=True)  # now the classifier takes them
    assert report.unused == [] and report.missing == []
    inputs = inputs_of(ref)
    check("distilbert", "classifier logits", classifier(inputs), ref["logits"])
    # Token types are accepted and ignored (the reference saw none; these inputs hold pairs).
    assert inputs["input_type_ids"].any()
    np.testing.assert_array_equal(classifier({**inputs, "input_type_ids": 0 * inputs["input_type_ids"]}),
                                  classifier(inputs))


def test_distilbert_base_model_loads_strict_with_a_new_pre_classifier(reference):
    folder, ref = reference["distilbert_base"]
    pretrained = load_pretrained(folder, strict=True)
    assert pretrained.report.unused == []
    assert pretrained.report.missing == ["pooler/dense/kernel", "pooler/dense/bias"]
    check("distilbert_base", "sequence_output (all)", pretrained.encoder(inputs_of(ref))["sequence_output"],
          ref["sequence_output"])


@pytest.mark.parametrize("name", ["roberta_mlm", "distilbert_mlm"])
def test_masked_lm_heads_of_the_hf_only_families(reference, name):
    """RobertaForMaskedLM's `lm_head` and DistilBertForMaskedLM's `vocab_*` into `bert_pretrainer`'s MLM head;
    neither checkpoint has a pooler (the released RoBERTa weights have none either): new, even when strict."""
    folder, ref = reference[name]
    pretrained = load_pretrained(folder, with_heads=True)
    assert pretrained.report.unused == []
    assert pretrained.report.missing == ["pooler/dense/kernel", "pooler/dense/bias"]
    assert "nsp_logits" not in pretrained.pretrainer(inputs_of(ref))
    check(name, "mlm_logits", pretrained.pretrainer(inputs_of(ref))["mlm_logits"], ref["mlm_logits"])


def test_strict_load_names_the_missing_variables(reference, tmp_path):
    hf_folder, _ = reference["albert"]
    arrays = {k: v for k, v in hf_arrays(hf_folder).items() if "full_layer_layer_norm" not in k}
    folder = tmp_path / "partial"
    write_official(folder, arrays, albert_official_name, extras=False)
    (folder / "albert_config.json").write_text(
        json.dumps(BertConfig.from_json_file(os.path.join(hf_folder, "config.json")).to_dict("official")))
    with pytest.raises(ValueError) as e:
        load_pretrained(str(folder))
    message = str(e.value)
    assert "strict load: 2 encoder variable(s)" in message
    assert "transformer_group_0_inner_0/output_layer_norm/gamma" in message
    assert "bert/encoder/transformer/group_0/inner_group_0/LayerNorm_1/gamma" in message
    report = load_pretrained(str(folder), strict=False).report
    assert report.missing == ["transformer_group_0_inner_0/output_layer_norm/gamma",
                              "transformer_group_0_inner_0/output_layer_norm/beta"]


def test_config_disagreeing_with_an_albert_checkpoint(reference, tmp_path):
    hf_folder, _ = reference["albert"]
    folder, _ = official_albert_folder(tmp_path, hf_folder)
    config = json.load(open(os.path.join(folder, "albert_config.json")))
    config["embedding_size"] = 24
    with open(os.path.join(folder, "albert_config.json"), "w") as f:
        json.dump(config, f)
    with pytest.raises(ValueError, match="embedding_size 16.*embedding_size 24.*is the albert_config.json"):
        load_pretrained(folder)


def test_roberta_has_no_official_format(reference, tmp_path):
    folder, _ = reference["roberta"]
    encoder = load_pretrained(folder).encoder
    write_tf1_checkpoint(str(tmp_path / "x.ckpt"), {"roberta/embeddings/word_embeddings": np.zeros((99, 32), "f")})
    with pytest.raises(ValueError, match="roberta has no official TF1 checkpoint format"):
        load_official(encoder, str(tmp_path / "x.ckpt"))


def test_lora_and_adapters_on_albert_start_as_the_plain_classifier(reference):
    folder, ref = reference["albert"]
    plain = bert_classifier(load_pretrained(folder).encoder, num_classes=3)
    adapted_encoder = load_pretrained(folder, lora_rank=2, lora_targets=("query", "value", "intermediate"),
                                      adapter_type="houlsby", adapter_size=4).encoder
    adapted = bert_classifier(adapted_encoder, num_classes=3)
    adapted.get_layer("classifier").set_weights(plain.get_layer("classifier").get_weights())
    inputs = inputs_of(ref)
    np.testing.assert_allclose(adapted(inputs), plain(inputs), atol=1e-6)
    trainable = enable_parameter_efficient_training(adapted)
    paths = {v.path for v in trainable}
    assert any("query_lora" in p for p in paths) and any("ffn_adapter" in p for p in paths)
    assert not any(p.endswith("attention/query/kernel") for p in paths)  # the shared base stays frozen
    np.testing.assert_allclose(merge_lora(adapted)(inputs), plain(inputs), atol=1e-5)
