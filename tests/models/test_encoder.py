import keras
import numpy as np
import pytest

from kzoo.models import bert_classifier, bert_encoder
from tests.conftest import random_inputs


@pytest.mark.parametrize("norm_first", [False, True])
def test_output_contract(tiny_config, norm_first):
    encoder = bert_encoder(tiny_config, norm_first=norm_first)
    out = encoder(random_inputs(3, 7, tiny_config.vocab_size))
    assert tuple(out["sequence_output"].shape) == (3, 7, 16)
    assert tuple(out["pooled_output"].shape) == (3, 16)
    assert len(out["encoder_outputs"]) == tiny_config.num_hidden_layers
    if not norm_first:  # post-LN: the last block's output is the sequence output
        np.testing.assert_array_equal(out["encoder_outputs"][-1], out["sequence_output"])
    for name in ("input_word_ids", "input_mask", "input_type_ids"):
        assert encoder.input[name].dtype == "int32"


@pytest.mark.parametrize("position_embedding", ["learned", "sinusoidal"])
def test_padding_never_changes_real_positions(tiny_config, position_embedding):
    encoder = bert_encoder(tiny_config, position_embedding=position_embedding)
    inputs = random_inputs(2, 9, tiny_config.vocab_size, lengths=[5, 9])
    full = encoder(inputs)
    short = encoder({k: v[:1, :5] for k, v in inputs.items()})
    junk = {k: v.copy() for k, v in inputs.items()}
    junk["input_word_ids"][0, 5:] = 7  # ids under the mask must not matter
    junk["input_type_ids"][0, 5:] = 1
    noisy = encoder(junk)
    np.testing.assert_allclose(full["sequence_output"][0, :5], short["sequence_output"][0], atol=1e-5)
    np.testing.assert_allclose(full["sequence_output"][0, :5], noisy["sequence_output"][0, :5], atol=1e-5)
    np.testing.assert_allclose(full["pooled_output"][0], short["pooled_output"][0], atol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_keras_file_reloads_with_identical_outputs(tmp_path, tiny_config, norm_first):
    model = bert_classifier(tiny_config, num_classes=3, norm_first=norm_first)
    inputs = random_inputs(2, 6, tiny_config.vocab_size)
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_array_equal(model(inputs), reloaded(inputs))


def test_dropout_overrides_and_static_length(tiny_config):
    encoder = bert_encoder(tiny_config, seq_length=8, dropout=0.0, attention_dropout=0.0)
    inputs = random_inputs(2, 8, tiny_config.vocab_size)
    a = encoder(inputs, training=True)["sequence_output"]
    b = encoder(inputs, training=True)["sequence_output"]
    np.testing.assert_array_equal(a, b)  # no dropout left
    assert encoder.input["input_word_ids"].shape == (None, 8)
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        bert_encoder(tiny_config, seq_length=64)


def test_classifier_rejects_wrong_arguments(tiny_config):
    with pytest.raises(TypeError, match="BertConfig or an encoder"):
        bert_classifier("bert", num_classes=2)
    with pytest.raises(ValueError, match="only apply when given a BertConfig"):
        bert_classifier(bert_encoder(tiny_config), num_classes=2, norm_first=True)


def test_import_kzoo_registers_everything_for_load_model(tmp_path, tiny_config):
    import subprocess
    import sys

    model = bert_classifier(tiny_config, num_classes=2)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.save(tmp_path / "m.keras")
    script = ("import sys, keras, kzoo; m = keras.models.load_model(sys.argv[1]); "
              "assert kzoo.models.bert_classifier and kzoo.checkpoints.load_pretrained; print(m.name)")
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.keras")], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("bert_classifier"), run.stderr[-2000:]


def test_adapter_and_lora_options_reach_every_block(tiny_config):
    from kzoo.layers import TransformerEncoderBlock

    model = bert_classifier(tiny_config, num_classes=2, adapter_type="pfeiffer", adapter_reduction_factor=8,
                            lora_rank=2, lora_alpha=8, lora_targets=["key"])
    encoder = model.get_layer("bert_encoder")
    blocks = [l for l in encoder.layers if isinstance(l, TransformerEncoderBlock)]
    assert len(blocks) == tiny_config.num_hidden_layers
    for block in blocks:
        config = block.get_config()
        assert (config["adapter_type"], config["adapter_size"], config["lora_rank"], config["lora_alpha"],
                config["lora_targets"]) == ("pfeiffer", 2, 2, 8, ["key"])
    plain = bert_encoder(tiny_config)
    assert all(l.get_config()["adapter_type"] is None and l.get_config()["lora_rank"] == 0
               for l in plain.layers if isinstance(l, TransformerEncoderBlock))
