"""kzoo's encoder against independent implementations given the same weights.

References: the original Hugging Face BertModel (torch, run in a subprocess)
and keras-hub's BertBackbone with its feed-forward GELU set to the exact erf
form the checkpoint was trained with (keras-hub hard-codes the tanh form,
which alone differs by ~6e-3 on this model).
"""

import importlib.util
import os
import subprocess
import sys

import keras_hub
import numpy as np
import pytest

from kzoo.checkpoints import load_pretrained
from kzoo.layers import gelu_exact

TOLERANCE = 1e-4


def parity_inputs():
    """Padded single sentences and a pair, real-looking ids from the vocab."""
    rng = np.random.default_rng(7)
    batch, seq = 4, 40
    ids = rng.integers(1000, 30000, (batch, seq)).astype("int32")
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for i, n in enumerate([40, 9, 23, 31]):
        ids[i, 0], ids[i, n - 1], ids[i, n:] = 101, 102, 0
        mask[i, :n] = 1
    types[3, 15:31] = 1
    ids[3, 14] = 102
    return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}


def assert_close(kzoo_out, ref_sequence, ref_pooled, mask):
    real = mask.astype(bool)
    seq_diff = np.abs(np.asarray(kzoo_out["sequence_output"])[real] - ref_sequence[real]).max()
    pooled_diff = np.abs(np.asarray(kzoo_out["pooled_output"]) - ref_pooled).max()
    print(f"max abs diff: sequence {seq_diff:.2e}, pooled {pooled_diff:.2e}")
    assert seq_diff < TOLERANCE and pooled_diff < TOLERANCE


@pytest.fixture(scope="module")
def hf_reference(tmp_path_factory):
    """The original Hugging Face BertModel's outputs on `parity_inputs()` from the pip package's folder
    (torch, in a subprocess that never imports TensorFlow), computed once for the tests below."""
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
        pytest.skip("the Hugging Face reference needs transformers and torch (pip install -e '.[test]')")
    from tests.conftest import minilm_hf_folder_or_skip

    folder, tmp = minilm_hf_folder_or_skip(), tmp_path_factory.mktemp("hf_reference")
    np.savez(tmp / "in.npz", **parity_inputs())
    script = os.path.join(os.path.dirname(__file__), "hf_reference.py")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run([sys.executable, script, folder, str(tmp / "in.npz"), str(tmp / "out.npz")],
                   check=True, env=env, timeout=300)
    return dict(np.load(tmp / "out.npz"))


def test_matches_original_hugging_face_model(minilm_ckpt_dir, hf_reference):
    inputs = parity_inputs()
    # Official-format checkpoint into kzoo vs the HF model from the pip package.
    encoder = load_pretrained(minilm_ckpt_dir).encoder
    assert_close(encoder(inputs), hf_reference["sequence_output"], hf_reference["pooled_output"],
                 inputs["input_mask"])


def test_hf_folder_matches_original_hugging_face_model(minilm_hf_folder, hf_reference):
    inputs = parity_inputs()
    # The pip package's HF folder into kzoo (kzoo's HF loader) vs the HF model on the same folder.
    encoder = load_pretrained(minilm_hf_folder).encoder
    assert_close(encoder(inputs), hf_reference["sequence_output"], hf_reference["pooled_output"],
                 inputs["input_mask"])


def _keras_hub_backbone(kzoo_encoder, config):
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=config.vocab_size,
        num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        hidden_dim=config.hidden_size,
        intermediate_dim=config.intermediate_size,
        dropout=0.0,
        max_sequence_length=config.max_position_embeddings,
        num_segments=config.type_vocab_size,
    )
    layers = {l.name: l for l in kzoo_encoder.layers}
    emb = layers["embeddings"]
    backbone.get_layer("token_embedding").embeddings.assign(emb.word_embeddings.embeddings)
    backbone.get_layer("segment_embedding").embeddings.assign(emb.token_type_embeddings.embeddings)
    backbone.get_layer("position_embedding").position_embeddings.assign(emb.position_embeddings.weights[0])
    backbone.get_layer("embeddings_layer_norm").set_weights(emb.layer_norm.get_weights())
    for i in range(config.num_hidden_layers):
        ours, theirs = layers[f"transformer_layer_{i}"], backbone.get_layer(f"transformer_layer_{i}")
        attention = theirs._self_attention_layer
        for a, b in ((ours.attention.query_dense, attention.query_dense),
                     (ours.attention.key_dense, attention.key_dense),
                     (ours.attention.value_dense, attention.value_dense),
                     (ours.attention.output_dense, attention.output_dense),
                     (ours.attention_layer_norm, theirs._self_attention_layer_norm),
                     (ours.intermediate_dense, theirs._feedforward_intermediate_dense),
                     (ours.output_dense, theirs._feedforward_output_dense),
                     (ours.output_layer_norm, theirs._feedforward_layer_norm)):
            b.set_weights(a.get_weights())
        theirs._feedforward_intermediate_dense.activation = gelu_exact  # the checkpoint's activation
    backbone.get_layer("pooled_dense").set_weights(layers["pooler"].dense.get_weights())
    return backbone


def test_matches_keras_hub_backbone(minilm_hf_folder):
    pretrained = load_pretrained(minilm_hf_folder)
    backbone = _keras_hub_backbone(pretrained.encoder, pretrained.config)
    inputs = parity_inputs()
    ref = backbone({"token_ids": inputs["input_word_ids"], "segment_ids": inputs["input_type_ids"],
                    "padding_mask": inputs["input_mask"]})
    assert_close(pretrained.encoder(inputs), np.asarray(ref["sequence_output"]), np.asarray(ref["pooled_output"]),
                 inputs["input_mask"])
