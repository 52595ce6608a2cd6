import json

import pytest

from kzoo.configs import OFFICIAL_KEYS, BertConfig


def test_reads_official_config(minilm_ckpt_dir):
    config = BertConfig.from_json_file(f"{minilm_ckpt_dir}/bert_config.json")
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (30522, 384, 6)
    assert (config.num_attention_heads, config.intermediate_size, config.hidden_act) == (12, 1536, "gelu")
    assert config.layer_norm_eps == 1e-12 and config.head_size == 32


def test_reads_hf_config_same_as_official(minilm_ckpt_dir, minilm_hf_folder):
    official = BertConfig.from_json_file(f"{minilm_ckpt_dir}/bert_config.json")
    hf = BertConfig.from_json_file(f"{minilm_hf_folder}/config.json")
    assert hf == official


@pytest.mark.parametrize("fmt", ["official", "hf"])
def test_round_trip(tmp_path, tiny_config, fmt):
    path = tiny_config.to_json_file(tmp_path / "c.json", format=fmt)
    data = json.loads(open(path).read())
    if fmt == "official":
        assert sorted(data) == sorted(OFFICIAL_KEYS)
    else:
        assert data["model_type"] == "bert"
    assert BertConfig.from_json_file(path) == tiny_config


def _write(tmp_path, **changes):
    data = BertConfig(vocab_size=10, hidden_size=8, num_attention_heads=2).to_dict()
    data.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del data[key]
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"num_attention_heads": 3}, "num_attention_heads"),
        ({"hidden_act": "gelu_fancy"}, "hidden_act"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"vocab_size": -5}, "vocab_size"),
        ({"intermediate_size": 2.5}, "intermediate_size"),
        ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
        ({"type_vocab_size": None}, "type_vocab_size"),
    ],
)
def test_invalid_config_names_file_and_key(tmp_path, changes, key):
    path = _write(tmp_path, **changes)
    with pytest.raises(ValueError) as e:
        BertConfig.from_json_file(path)
    assert path in str(e.value) and key in str(e.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        BertConfig.from_json_file(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"vocab_size": 3,\n oops}')
    with pytest.raises(ValueError, match=r"bad.json: not valid JSON \(line 2"):
        BertConfig.from_json_file(bad)


def test_hf_refuses_relative_positions(tmp_path):
    data = BertConfig(vocab_size=10, hidden_size=8, num_attention_heads=2).to_dict("hf")
    data["position_embedding_type"] = "relative_key"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="position_embedding_type"):
        BertConfig.from_json_file(path)


def test_constructor_validates():
    with pytest.raises(ValueError, match="num_attention_heads"):
        BertConfig(vocab_size=10, hidden_size=10, num_attention_heads=3)


# ------------------------------------------------------------------------------- the other families
def _albert_official(**changes):
    data = {key: value for key, value in BertConfig(vocab_size=30, hidden_size=8, num_attention_heads=2,
                                                    intermediate_size=16).to_dict().items()}
    data.update(embedding_size=4, num_hidden_groups=1, inner_group_num=1, net_structure_type=0, gap_size=0,
                num_memory_blocks=0, down_scale_factor=1)  # google-research/albert's albert_config.json keys
    data.update(changes)
    return data


def _hf(model_type, **changes):
    data = BertConfig(vocab_size=30, hidden_size=8, num_attention_heads=2, intermediate_size=16).to_dict("hf")
    data.update(model_type=model_type, **changes)
    return data


def _distilbert(**changes):
    data = dict(model_type="distilbert", vocab_size=30, dim=8, n_layers=2, n_heads=2, hidden_dim=16,
                activation="gelu", dropout=0.1, attention_dropout=0.1, max_position_embeddings=20,
                initializer_range=0.02, sinusoidal_pos_embds=False, pad_token_id=0)
    data.update(changes)
    return data


def _file(tmp_path, data, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_reads_official_albert_config(tmp_path):
    config = BertConfig.from_json_file(_file(tmp_path, _albert_official(num_hidden_groups=2), "albert_config.json"))
    assert (config.family, config.embedding_size, config.num_hidden_groups, config.inner_group_num) == (
        "albert", 4, 2, 1)
    assert config.hidden_act == "gelu_new"  # google-research/albert's gelu is the tanh approximation
    assert config.has_embedding_projection and config.pooler == "dense"
    assert [config.layer_group(i) for i in range(config.num_hidden_layers)] == [0] * 6 + [1] * 6
    assert config.to_dict("official")["hidden_act"] == "gelu"
    assert BertConfig.from_dict(config.to_dict("official")) == config
    assert BertConfig.from_dict(config.to_dict("hf")) == config


def test_reads_electra_config_bert_style_plus_embedding_size(tmp_path):
    data = BertConfig(vocab_size=30, hidden_size=8, num_attention_heads=2, intermediate_size=16).to_dict()
    config = BertConfig.from_json_file(_file(tmp_path, {**data, "embedding_size": 4}, "bert_config.json"))
    assert (config.family, config.embedding_width, config.pooler, config.has_embedding_projection) == (
        "electra", 4, "first_token", True)
    # A plain bert_config.json beside an ELECTRA checkpoint (the caller knows the family): no projection.
    plain = BertConfig.from_json_file(_file(tmp_path, data, "bert_config.json"), family="electra")
    assert (plain.family, plain.embedding_width, plain.has_embedding_projection) == ("electra", 8, False)
    assert BertConfig.from_dict(config.to_dict("official")) == config
    assert BertConfig.from_dict(config.to_dict("hf")) == config


@pytest.mark.parametrize("model_type, family", [("albert", "albert"), ("electra", "electra"), ("roberta", "roberta"),
                                                 ("xlm-roberta", "xlm_roberta")])
def test_reads_hf_configs_of_every_family(tmp_path, model_type, family):
    extra = {"albert": dict(embedding_size=4, num_hidden_groups=2, inner_group_num=1, hidden_act="gelu_new"),
             "electra": dict(embedding_size=4),
             "roberta": dict(pad_token_id=1, type_vocab_size=1, max_position_embeddings=22, layer_norm_eps=1e-5),
             "xlm_roberta": dict(pad_token_id=1, type_vocab_size=1, max_position_embeddings=22, layer_norm_eps=1e-5)}
    config = BertConfig.from_json_file(_file(tmp_path, _hf(model_type, **extra[family])))
    assert config.family == family
    if family in ("roberta", "xlm_roberta"):
        assert (config.position_padding_idx, config.max_sequence_length, config.layer_norm_eps) == (1, 20, 1e-5)
    else:
        assert config.embedding_width == 4 and config.position_padding_idx is None
    assert BertConfig.from_dict(config.to_dict("hf")) == config


def test_reads_hf_distilbert_config(tmp_path):
    config = BertConfig.from_json_file(_file(tmp_path, _distilbert()))
    assert (config.family, config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.intermediate_size, config.type_vocab_size, config.pooler) == ("distilbert", 8, 2, 2, 16, 0,
                                                                                  "pre_classifier")
    assert BertConfig.from_dict(config.to_dict("hf")) == config
    with pytest.raises(ValueError, match="distilbert has no official config format"):
        config.to_dict("official")


@pytest.mark.parametrize(
    "data, name, key",
    [
        (_albert_official(num_hidden_groups=0), "albert_config.json", "num_hidden_groups"),
        (_albert_official(num_hidden_groups=20), "albert_config.json", "num_hidden_groups"),
        (_albert_official(embedding_size="128"), "albert_config.json", "embedding_size"),
        (_albert_official(inner_group_num=0), "albert_config.json", "inner_group_num"),
        (_hf("albert", embedding_size=4, num_hidden_layers=None), "config.json", "num_hidden_layers"),
        (_hf("roberta", max_position_embeddings=2, pad_token_id=1), "config.json", "max_position_embeddings"),
        (_hf("camembert"), "config.json", "model_type"),
        (_distilbert(n_heads=3), "config.json", "num_attention_heads"),
        (_distilbert(n_heads=None), "config.json", "n_heads"),
        (_distilbert(activation="gelu_fancy"), "config.json", "hidden_act"),
    ],
)
def test_invalid_family_config_names_file_and_key(tmp_path, data, name, key):
    data = {k: v for k, v in data.items() if v is not None}
    path = _file(tmp_path, data, name)
    with pytest.raises(ValueError) as e:
        BertConfig.from_json_file(path)
    assert path in str(e.value) and key in str(e.value)


def test_a_family_the_file_contradicts_is_refused(tmp_path):
    path = _file(tmp_path, _albert_official(), "albert_config.json")
    with pytest.raises(ValueError, match="expected a config of family 'electra', but its keys make it 'albert'"):
        BertConfig.from_json_file(path, family="electra")
    with pytest.raises(ValueError, match="model_type.*expected a config of family 'bert'"):
        BertConfig.from_json_file(_file(tmp_path, _hf("roberta", pad_token_id=1)), family="bert")
    with pytest.raises(ValueError, match="roberta has no official config format"):
        BertConfig.from_json_file(_file(tmp_path, BertConfig(vocab_size=3, hidden_size=2, num_attention_heads=1)
                                        .to_dict(), "bert_config.json"), family="roberta")


def test_family_fields_are_validated_in_the_constructor():
    with pytest.raises(ValueError, match="family"):
        BertConfig(vocab_size=10, family="gpt2")
    with pytest.raises(ValueError, match="type_vocab_size"):
        BertConfig(vocab_size=10, family="distilbert")  # type_vocab_size must be 0 there
    assert BertConfig(vocab_size=10, family="distilbert", type_vocab_size=0).type_vocab_size == 0
    with pytest.raises(ValueError, match="type_vocab_size"):
        BertConfig(vocab_size=10, type_vocab_size=0)  # only DistilBERT has no token types
    with pytest.raises(ValueError, match="embedding_size"):
        BertConfig(vocab_size=10, hidden_size=8, num_attention_heads=2, family="roberta", embedding_size=4)
    with pytest.raises(ValueError, match="num_hidden_groups"):
        BertConfig(vocab_size=10, hidden_size=8, num_attention_heads=2, family="electra", num_hidden_groups=2)


def test_relative_position_fields_are_validated_in_the_constructor():
    base = dict(vocab_size=10, hidden_size=8, num_attention_heads=2)
    config = BertConfig(**base, max_relative_position=16, use_absolute_positions=False)
    assert config.relative_positions and config.max_sequence_length is None
    assert BertConfig.from_dict(config.to_dict()) == config
    for changes, key in [
        (dict(max_relative_position=-3), "max_relative_position"),
        (dict(max_relative_position=2, relative_position_values=1), "relative_position_values"),
        (dict(use_absolute_positions=False), "use_absolute_positions"),
        (dict(max_relative_position=2, family="roberta"), "max_relative_position"),
    ]:
        with pytest.raises(ValueError, match=f"BertConfig: invalid `{key}`"):
            BertConfig(**base, **changes)


# ------------------------------------------------------------------------------------------- DeBERTa-v2/v3
def _deberta(**changes):
    """A deberta-v3-base-style config.json (its keys, as the Hub ships them; tiny sizes)."""
    data = dict(model_type="deberta-v2", vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=16, hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                max_position_embeddings=512, type_vocab_size=0, initializer_range=0.02, layer_norm_eps=1e-7,
                relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True,
                pos_att_type="p2c|c2p", max_relative_positions=-1, position_biased_input=False, pooler_hidden_size=8,
                pooler_dropout=0, pooler_hidden_act="gelu")
    data.update(changes)
    return data


def test_reads_hf_deberta_v3_config(tmp_path):
    config = BertConfig.from_json_file(_file(tmp_path, _deberta()))
    assert (config.family, config.type_vocab_size, config.use_absolute_positions, config.max_sequence_length) == (
        "deberta_v2", 0, False, None)
    assert (config.pos_att_type, config.position_buckets, config.relative_max_distance, config.relative_span) == (
        ("p2c", "c2p"), 256, 512, 256)  # "p2c|c2p" read as DebertaV2Config does; -1 -> max_position_embeddings
    assert (config.share_att_key, config.norm_rel_ebd, config.pooler, config.layer_norm_eps) == (
        True, "layer_norm", "context", 1e-7)
    assert config.disentangled_attention == {"position_buckets": 256, "max_relative_positions": 512,
                                             "pos_att_type": ["p2c", "c2p"], "share_att_key": True}
    assert BertConfig.from_dict(config.to_dict("hf")) == config
    with pytest.raises(ValueError, match="deberta_v2 has no official config format"):
        config.to_dict("official")
    # DebertaV2Config's defaults for absent keys (position_biased_input true, no buckets, no position terms).
    bare = {k: v for k, v in _deberta().items() if k not in ("position_buckets", "norm_rel_ebd", "share_att_key",
                                                               "pos_att_type", "position_biased_input")}
    config = BertConfig.from_json_file(_file(tmp_path, bare))
    assert (config.use_absolute_positions, config.position_buckets, config.pos_att_type, config.share_att_key,
            config.norm_rel_ebd) == (True, -1, (), False, "none")


@pytest.mark.parametrize(
    "changes, key",
    [
        (dict(relative_attention=False), "relative_attention"),
        (dict(relative_attention=None), "relative_attention"),  # absent: DebertaV2Config's false
        (dict(conv_kernel_size=3), "conv_kernel_size"),  # deberta-v2-xlarge's convolution
        (dict(pos_att_type="p2c|c2p|p2p"), "pos_att_type"),
        (dict(pos_att_type=["c2p", "c2p"]), "pos_att_type"),
        (dict(norm_rel_ebd="batch_norm"), "norm_rel_ebd"),
        (dict(pooler_hidden_size=16), "pooler_hidden_size"),
        (dict(embedding_size=4), "embedding_size"),
        (dict(attention_head_size=2), "attention_head_size"),
        (dict(pooler_hidden_act="gelu_new"), "pooler_hidden_act"),
        (dict(share_att_key="yes"), "share_att_key"),
        (dict(position_buckets=256, max_relative_positions=100), "position_buckets"),
        (dict(type_vocab_size=-1), "type_vocab_size"),
    ],
)
def test_invalid_deberta_config_names_file_and_key(tmp_path, changes, key):
    data = {k: v for k, v in _deberta(**changes).items() if v is not None}
    path = _file(tmp_path, data)
    with pytest.raises(ValueError) as e:
        BertConfig.from_json_file(path)
    assert path in str(e.value) and f"`{key}`" in str(e.value)


def test_deberta_fields_belong_to_deberta():
    with pytest.raises(ValueError, match="BertConfig: invalid `position_buckets`.*family 'deberta_v2' only"):
        BertConfig(vocab_size=10, hidden_size=8, num_attention_heads=2, position_buckets=8)
    config = BertConfig(vocab_size=10, hidden_size=8, num_attention_heads=2, family="deberta_v2", type_vocab_size=0,
                        use_absolute_positions=False, position_buckets=8, max_relative_positions=16,
                        pos_att_type=["c2p"])
    assert config.pos_att_type == ("c2p",) and config.relative_span == 8 and not config.relative_positions
