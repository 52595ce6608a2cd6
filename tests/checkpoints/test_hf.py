import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from kzoo.checkpoints import load_hf_bert, load_pretrained
from kzoo.checkpoints.hf import official_name
from kzoo.models import bert_encoder
from tests.conftest import random_inputs


@pytest.mark.parametrize(
    "hf, official",
    [
        ("embeddings.word_embeddings.weight", ("bert/embeddings/word_embeddings", False)),
        ("bert.embeddings.LayerNorm.weight", ("bert/embeddings/LayerNorm/gamma", False)),
        ("embeddings.LayerNorm.beta", ("bert/embeddings/LayerNorm/beta", False)),
        ("encoder.layer.11.attention.self.query.weight", ("bert/encoder/layer_11/attention/self/query/kernel", True)),
        ("bert.encoder.layer.0.output.LayerNorm.bias", ("bert/encoder/layer_0/output/LayerNorm/beta", False)),
        ("pooler.dense.bias", ("bert/pooler/dense/bias", False)),
        ("embeddings.position_ids", None),
        ("cls.predictions.bias", ("cls/predictions/output_bias", False)),
        ("cls.predictions.transform.dense.weight", ("cls/predictions/transform/dense/kernel", True)),
        ("cls.seq_relationship.weight", ("cls/seq_relationship/output_weights", False)),  # [2, hidden] as official
        ("cls.predictions.decoder.weight", None),  # the tied word table
        ("qa_outputs.weight", None),
    ],
)
def test_name_translation(hf, official):
    assert official_name(hf) == official


def test_hf_folder_equals_official_checkpoint(minilm_ckpt_dir, minilm_hf_folder):
    official = load_pretrained(minilm_ckpt_dir)
    hf = load_pretrained(minilm_hf_folder)
    assert hf.format == "hf" and official.format == "official"
    assert hf.report.unused == ["embeddings.position_ids"] and hf.report.missing == []
    inputs = random_inputs(3, 12, 30522, seed=5)
    a, b = official.encoder(inputs), hf.encoder(inputs)
    np.testing.assert_array_equal(a["sequence_output"], b["sequence_output"])
    np.testing.assert_array_equal(a["pooled_output"], b["pooled_output"])


def test_bad_folders(tmp_path, tiny_config):
    with pytest.raises(ValueError, match="not a folder"):
        load_hf_bert(bert_encoder(tiny_config), tmp_path / "nope")
    with pytest.raises(ValueError, match="no model.safetensors or pytorch_model.bin"):
        load_hf_bert(bert_encoder(tiny_config), tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="model.safetensors: cannot read weights"):
        load_hf_bert(bert_encoder(tiny_config), tmp_path)
    with pytest.raises(ValueError, match="neither an official BERT folder"):
        load_pretrained(str(tmp_path))


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="pytorch_model.bin needs torch")
@pytest.mark.skipif(importlib.util.find_spec("triton") is not None,
                    reason="triton (from CUDA torch builds) aborts TensorFlow processes that import torch; "
                           "install the torch==2.13.0 CPU wheel the test extra pins")
def test_pytorch_bin_equals_safetensors(tmp_path, minilm_hf_folder):
    folder = tmp_path / "hf_bin"
    folder.mkdir()
    for name in ("config.json", "vocab.txt"):
        shutil.copy(os.path.join(minilm_hf_folder, name), folder / name)
    # torch alone writes the .bin (no TensorFlow in that process).
    script = ("import sys, torch; from safetensors.torch import load_file; "
              "torch.save(load_file(sys.argv[1]), sys.argv[2])")
    subprocess.run([sys.executable, "-c", script, os.path.join(minilm_hf_folder, "model.safetensors"),
                    str(folder / "pytorch_model.bin")], check=True, timeout=300)
    from_bin, from_safetensors = load_pretrained(str(folder)), load_pretrained(minilm_hf_folder)
    assert from_bin.report.loaded == from_safetensors.report.loaded
    assert from_bin.report.source.endswith("pytorch_model.bin")
    inputs = random_inputs(2, 10, 30522, seed=9)
    np.testing.assert_array_equal(from_bin.encoder(inputs)["sequence_output"],
                                  from_safetensors.encoder(inputs)["sequence_output"])
