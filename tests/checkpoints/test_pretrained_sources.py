"""load_pretrained takes a preset's name (downloaded once into $KZOO_HOME, then offline) and returns the
family's in-graph tokenizer with the encoder."""

import os
import pathlib
import zipfile

import numpy as np
import tensorflow as tf

from kzoo.checkpoints import load_pretrained, presets
from kzoo.text import BertTokenizer


def test_a_preset_name_downloads_once_then_loads_offline(tmp_path, monkeypatch, tiny_bert_folder):
    folder = pathlib.Path(tiny_bert_folder(1))  # an official folder: bert_config.json, vocab.txt, bert_model.ckpt.*
    archive = tmp_path / "uncased_L-1_H-32_A-2.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in folder.iterdir():
            z.write(path, f"uncased_L-1_H-32_A-2/{path.name}")
    preset = presets.Preset(name="tiny_test_bert", family="bert", format="official", urls=(archive.as_uri(),),
                            files=presets._BERT_FILES, lower_case=True, description="1 block, for the test")
    monkeypatch.setitem(presets.PRESETS, preset.name, preset)
    monkeypatch.setenv("KZOO_HOME", str(tmp_path / "cache"))

    first = load_pretrained("tiny_test_bert")
    assert first.family == "bert" and first.format == "official" and not first.report.missing
    assert first.source.startswith(str(tmp_path / "cache" / "tiny_test_bert"))
    os.remove(archive)  # offline from now on: the cache is verified and used
    again = load_pretrained("tiny_test_bert")
    inputs = {"input_word_ids": np.array([[101, 7592, 102]], "int32"), "input_mask": np.ones((1, 3), "int32"),
              "input_type_ids": np.zeros((1, 3), "int32")}
    np.testing.assert_array_equal(first.encoder(inputs)["sequence_output"], again.encoder(inputs)["sequence_output"])


def test_tokenizer_comes_with_the_encoder(minilm_hf_folder):
    pretrained = load_pretrained(minilm_hf_folder)
    texts = tf.constant(["Hello, world!", "an unaffable tokenizer"])
    reference = BertTokenizer(os.path.join(minilm_hf_folder, "vocab.txt"), lower_case=True)
    assert pretrained.tokenizer(texts).to_list() == reference(texts).to_list()
