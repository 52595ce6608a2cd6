"""The encoder of every family: one contract, ALBERT's real sharing, the family-specific pieces.
(Numerics against the original models: tests/checkpoints/test_families.py.)"""

import dataclasses

import keras
import numpy as np
import pytest

from kzoo.configs import BertConfig
from kzoo.layers import BertPooler
from kzoo.models import (albert_encoder, bert_classifier, bert_encoder, bert_pretrainer, electra_pretrainer,
                         encoder_family, encoder_parts)
from tests.conftest import random_inputs

SIZES = dict(vocab_size=40, hidden_size=16, num_hidden_layers=3, num_attention_heads=4, intermediate_size=24)
CONFIGS = {
    "bert": dict(),
    "albert": dict(family="albert", embedding_size=8, num_hidden_groups=2, inner_group_num=2, hidden_act="gelu_new"),
    "electra": dict(family="electra", embedding_size=8),
    "roberta": dict(family="roberta", pad_token_id=1, type_vocab_size=1, max_position_embeddings=34),
    "xlm_roberta": dict(family="xlm_roberta", pad_token_id=1, type_vocab_size=1, max_position_embeddings=34),
    "distilbert": dict(family="distilbert", type_vocab_size=0),
}


def config_of(family, **changes):
    return BertConfig(**{**SIZES, **CONFIGS[family], **changes})


def inputs_for(config, batch=3, seq=7, seed=0):
    inputs = random_inputs(batch, seq, config.vocab_size, seed=seed)
    if config.position_padding_idx is not None:  # RoBERTa: padding is the pad id, no real token is
        ids = inputs["input_word_ids"]
        ids[ids == config.pad_token_id] = config.pad_token_id + 1
        ids[inputs["input_mask"] == 0] = config.pad_token_id
    if config.type_vocab_size == 1:
        inputs["input_type_ids"][:] = 0
    return inputs


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_one_contract_for_every_family(family):
    config = config_of(family)
    encoder = bert_encoder(config)
    assert encoder.name == f"{family}_encoder" and encoder_family(encoder) == {"xlm_roberta": "roberta"}.get(
        family, family)
    assert sorted(encoder.input) == ["input_mask", "input_type_ids", "input_word_ids"]
    out = encoder(inputs_for(config))
    assert sorted(out) == ["encoder_outputs", "pooled_output", "sequence_output"]
    assert tuple(out["sequence_output"].shape) == (3, 7, 16) and tuple(out["pooled_output"].shape) == (3, 16)
    assert len(out["encoder_outputs"]) == 3  # one per layer, ALBERT's shared ones included
    np.testing.assert_array_equal(out["encoder_outputs"][-1], out["sequence_output"])
    # Any task model takes it.
    assert tuple(bert_classifier(encoder, num_classes=2)(inputs_for(config)).shape) == (3, 2)


def test_albert_shares_its_blocks_across_depth(tmp_path):
    config = config_of("albert")  # 3 layers over 2 groups of 2 inner blocks: groups [0, 0, 1]
    assert [config.layer_group(i) for i in range(3)] == [0, 0, 1]
    encoder = bert_encoder(config)
    parts = encoder_parts(encoder)
    assert [[b.name for b in group] for group in parts.block_groups] == [
        ["transformer_group_0_inner_0", "transformer_group_0_inner_1"],
        ["transformer_group_1_inner_0", "transformer_group_1_inner_1"]]
    block_weights = len(parts.block_groups[0][0].weights)
    # one set of variables per distinct block, however many layers use it: 4 blocks, not 3 x 2
    assert len(encoder.weights) == 5 + 2 + 4 * block_weights + 2
    assert len({id(v) for v in encoder.weights}) == len(encoder.weights)
    # Calling a group's blocks again is what the encoder does: layer 1 = group 0 applied to layer 0's output.
    inputs = inputs_for(config)
    out = encoder(inputs)
    group_0 = parts.block_groups[0]
    again = group_0[1](group_0[0](out["encoder_outputs"][0], padding_mask=inputs["input_mask"]),
                       padding_mask=inputs["input_mask"])
    np.testing.assert_allclose(again, out["encoder_outputs"][1], atol=1e-5)
    # A change to a shared variable moves every layer that uses it.
    kernel = group_0[0].intermediate_dense.kernel
    kernel.assign(kernel.numpy() * 1.5)
    moved = encoder(inputs)
    for i in range(3):
        assert np.abs(np.asarray(moved["encoder_outputs"][i]) - np.asarray(out["encoder_outputs"][i])).max() > 1e-4
    # The sharing survives a .keras file.
    encoder.save(tmp_path / "albert.keras")
    reloaded = keras.models.load_model(tmp_path / "albert.keras")
    assert len(reloaded.weights) == len(encoder.weights)
    np.testing.assert_allclose(reloaded(inputs)["sequence_output"], moved["sequence_output"], atol=1e-6)


def test_roberta_positions_are_counted_from_the_padding_id():
    config = config_of("roberta")
    embeddings = encoder_parts(bert_encoder(config)).embeddings
    ids = np.array([[0, 5, 6, 2, 1, 1], [1, 1, 0, 7, 2, 1], [0, 5, 1, 6, 2, 1]], "int32")
    # transformers' create_position_ids_from_input_ids (fairseq's make_positions), in numpy
    real = (ids != 1).astype("int32")
    want = np.cumsum(real, axis=1) * real + 1
    np.testing.assert_array_equal(embeddings.position_ids(ids), want)
    assert want.max() == 1 + 4 and want[0, 0] == 2
    with pytest.raises(ValueError, match="pad_token_id"):
        bert_encoder(config, seq_length=33)  # 34 rows: 32 positions after the 2 skipped ones
    assert bert_encoder(config, seq_length=32).inputs[0].shape[1] == 32


def test_distilbert_ignores_token_types_and_pools_through_relu():
    config = config_of("distilbert")
    encoder = bert_encoder(config)
    parts = encoder_parts(encoder)
    assert parts.embeddings.token_type_embeddings is None
    inputs = inputs_for(config)
    assert inputs["input_type_ids"].any()
    out = encoder(inputs)
    np.testing.assert_array_equal(out["sequence_output"], encoder({**inputs, "input_type_ids": 0 *
                                                                   inputs["input_type_ids"]})["sequence_output"])
    (pooler,) = parts.poolers
    kernel, bias = (np.asarray(w) for w in pooler.dense.weights)
    want = np.maximum(np.asarray(out["sequence_output"])[:, 0] @ kernel + bias, 0.0)
    np.testing.assert_allclose(out["pooled_output"], want, atol=1e-5)


def test_electra_pools_the_first_token_and_projects_only_when_widths_differ():
    narrow = bert_encoder(config_of("electra"))
    assert encoder_parts(narrow).projection is not None
    (pooler,) = encoder_parts(narrow).poolers
    assert pooler.count_params() == 0
    out = narrow(inputs_for(config_of("electra")))
    np.testing.assert_array_equal(out["pooled_output"], np.asarray(out["sequence_output"])[:, 0])
    assert encoder_parts(bert_encoder(config_of("electra", embedding_size=None))).projection is None
    assert BertPooler.from_config(pooler.get_config()).use_dense is False


def test_heads_fit_narrow_embeddings():
    """ALBERT's and ELECTRA's word tables are narrower than the encoder: the MLM head maps back to them."""
    albert = bert_encoder(config_of("albert"))
    pretrainer = bert_pretrainer(albert)
    assert tuple(pretrainer.masked_lm.transform.kernel.shape) == (16, 8)
    out = pretrainer({**inputs_for(config_of("albert")), "masked_lm_positions": np.array([[1, 2]] * 3, "int32")})
    assert tuple(out["mlm_logits"].shape) == (3, 2, 40) and tuple(out["nsp_logits"].shape) == (3, 2)
    electra = electra_pretrainer(bert_encoder(config_of("electra")), generator_hidden_size=6, seed=0)  # 4 heads do not divide 6
    assert electra.generator_projection is not None and electra.generator_num_heads == 1
    assert tuple(electra.rtd_dense.kernel.shape) == (16, 16)
    out = electra({**inputs_for(config_of("electra")), "masked_lm_positions": np.array([[1, 2]] * 3, "int32")})
    assert tuple(out["mlm_logits"].shape) == (3, 2, 40) and tuple(out["rtd_logits"].shape) == (3, 7)
    restored = electra.__class__.from_config(electra.get_config())
    assert restored.generator_hidden_size == 6


def test_family_builders_check_the_family():
    assert albert_encoder(config_of("albert")).name == "albert_encoder"
    with pytest.raises(ValueError, match="albert_encoder needs a albert BertConfig"):
        albert_encoder(config_of("bert"))
    with pytest.raises(ValueError, match="inner_group_num"):
        dataclasses.replace(config_of("bert"), inner_group_num=2)
