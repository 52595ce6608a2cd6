"""Shaw et al. 2018 relative-position attention (`RelativeMultiHeadAttention` in `TransformerEncoderBlock`):
agreement with a numpy implementation of the paper's equations, padding, LoRA and adapters, config files,
`.keras` round trip."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.configs import BertConfig
from kzoo.layers import RelativeMultiHeadAttention, TransformerEncoderBlock

WIDTH, HEADS, SEQ = 12, 3, 7
LENGTHS = (7, 4, 1)


# --------------------------------------------------------------------------- numpy reference (the paper)
def paper_attention(x, real, wq, bq, wk, bk, wv, bv, wo, bo, rel_k, rel_v, k):
    """Shaw, Uszkoreit and Vaswani 2018, eqs. (3)-(5) with a^K, a^V of eq. (6)-(7), per head, float64, loops.

    x [B, T, D]; real [B, T] (1 = real token); wq/wk/wv [D, N, H]; bq/bk/bv [N, H]; wo [N, H, D]; bo [D];
    rel_k / rel_v [2k+1, H] (rel_v None: no a^V). Padding keys get no weight.
    """
    batch, length, _ = x.shape
    heads, size = wq.shape[1], wq.shape[2]
    out = np.zeros((batch, length, heads, size))
    for b in range(batch):
        for n in range(heads):
            q = x[b] @ wq[:, n] + bq[n]
            kk = x[b] @ wk[:, n] + bk[n]
            v = x[b] @ wv[:, n] + bv[n]
            for i in range(length):
                e = np.full(length, -np.inf)
                for j in range(length):
                    if not real[b, j]:
                        continue
                    w = max(-k, min(k, j - i)) + k  # w_clip(j - i, k)
                    e[j] = q[i] @ (kk[j] + rel_k[w]) / math.sqrt(size)
                alpha = np.exp(e - e.max())
                alpha /= alpha.sum()
                for j in range(length):
                    if real[b, j]:
                        w = max(-k, min(k, j - i)) + k
                        out[b, i, n] += alpha[j] * (v[j] + (rel_v[w] if rel_v is not None else 0.0))
    return np.einsum("btnh,nhd->btd", out, wo) + bo


def _ln(x, gamma, beta, eps):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


def paper_block(block, x, real):
    """The post-LN BERT block around `paper_attention` (exact GELU), from the block's variables."""
    f = lambda v: np.asarray(v, "float64")  # noqa: E731
    att = block.attention
    rel_v = att.relative_value_embeddings
    attended = paper_attention(
        x, real, f(att.query_dense.kernel), f(att.query_dense.bias), f(att.key_dense.kernel), f(att.key_dense.bias),
        f(att.value_dense.kernel), f(att.value_dense.bias), f(att.output_dense.kernel), f(att.output_dense.bias),
        f(att.relative_key_embeddings), None if rel_v is None else f(rel_v), block.max_relative_position,
    )
    eps = block.layer_norm_eps
    h = _ln(x + attended, f(block.attention_layer_norm.gamma), f(block.attention_layer_norm.beta), eps)
    inner = h @ f(block.intermediate_dense.kernel) + f(block.intermediate_dense.bias)
    inner = 0.5 * inner * (1 + np.vectorize(math.erf)(inner / math.sqrt(2)))
    ffn = inner @ f(block.output_dense.kernel) + f(block.output_dense.bias)
    return attended, _ln(h + ffn, f(block.output_layer_norm.gamma), f(block.output_layer_norm.beta), eps)


# --------------------------------------------------------------------------- helpers
def _mask(lengths=LENGTHS, seq=SEQ):
    return np.array([[1] * n + [0] * (seq - n) for n in lengths], "int32")


def _block(k, values=True, seed=0, **kwargs):
    block = TransformerEncoderBlock(num_heads=HEADS, intermediate_size=20, dropout=0.0, attention_dropout=0.0,
                                    max_relative_position=k, relative_position_values=values, **kwargs)
    block.build((None, None, WIDTH))
    rng = np.random.default_rng(seed)
    for v in block.weights:  # far from the initialiser's 0.02, so that every term matters
        if "lora" in v.path or "adapter" in v.path:
            continue
        scale = 0.1 if "layer_norm" in v.path else 0.4
        base = 1.0 if v.path.endswith("gamma") else 0.0
        v.assign((base + scale * rng.standard_normal(v.shape)).astype("float32"))
    return block


def _inputs(seed=1, seq=SEQ, batch=len(LENGTHS)):
    return np.random.default_rng(seed).standard_normal((batch, seq, WIDTH)).astype("float32")


def _copy(source, target):
    """Assigns `source`'s variables to `target`'s variables of the same path (below the block)."""
    values = {v.path.split("/", 1)[1]: v for v in source.weights}
    for v in target.weights:
        key = v.path.split("/", 1)[1]
        if key in values:
            v.assign(values[key])


# --------------------------------------------------------------------------- the equations
@pytest.mark.parametrize("k", [1, 3, 12])  # 12 > SEQ: no distance is clipped
@pytest.mark.parametrize("values", [True, False])
def test_block_agrees_with_the_paper(k, values):
    block = _block(k, values)
    x, mask = _inputs(), _mask()
    attended = block.attention(x, x, attention_mask=mask.astype(bool)[:, None, :])
    expected_attention, expected_block = paper_block(block, x.astype("float64"), mask)
    real = mask.astype(bool)
    assert np.abs(np.asarray(attended) - expected_attention)[real].max() < 1e-5
    out = np.asarray(block(x, padding_mask=mask))
    assert np.abs(out - expected_block)[real].max() < 1e-5
    assert (block.attention.relative_value_embeddings is not None) == values
    assert tuple(block.attention.relative_key_embeddings.shape) == (2 * k + 1, WIDTH // HEADS)


def test_relative_terms_matter():
    """The same projections without the relative embeddings give other outputs; different k too."""
    x, mask = _inputs(), _mask()
    outputs = [np.asarray(_block(k, seed=0)(x, padding_mask=mask)) for k in (1, 3)]
    block = _block(3)
    block.attention.relative_key_embeddings.assign(np.zeros((7, WIDTH // HEADS), "float32"))
    block.attention.relative_value_embeddings.assign(np.zeros((7, WIDTH // HEADS), "float32"))
    plain = TransformerEncoderBlock(num_heads=HEADS, intermediate_size=20, dropout=0.0, attention_dropout=0.0)
    plain.build((None, None, WIDTH))
    _copy(block, plain)
    np.testing.assert_allclose(block(x, padding_mask=mask), plain(x, padding_mask=mask), atol=1e-5)
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-2
    assert np.abs(outputs[1] - np.asarray(block(x, padding_mask=mask))).max() > 1e-2


def test_padding_never_changes_real_positions():
    block = _block(2)
    x, mask = _inputs(), _mask()
    reference = np.asarray(block(x, padding_mask=mask))
    garbage = np.where(mask[..., None].astype(bool), x, 100 * _inputs(seed=5))
    longer = np.concatenate([garbage, _inputs(seed=6, seq=5)], axis=1)  # five more padding positions
    longer_mask = np.concatenate([mask, np.zeros((len(LENGTHS), 5), "int32")], axis=1)
    for inputs, m in ((garbage, mask), (longer, longer_mask)):
        out = np.asarray(block(inputs, padding_mask=m))[:, :SEQ]
        assert np.abs(out - reference)[mask.astype(bool)].max() < 1e-5
    for i, n in enumerate(LENGTHS):  # and each row alone, unpadded
        alone = np.asarray(block(x[i : i + 1, :n], padding_mask=np.ones((1, n), "int32")))
        assert np.abs(alone[0] - reference[i, :n]).max() < 1e-5


# --------------------------------------------------------------------------- LoRA and adapters
ALL_TARGETS = ("query", "key", "value", "attention_output", "intermediate", "output")


@pytest.mark.parametrize("kwargs", [
    dict(lora_rank=2, lora_targets=ALL_TARGETS),
    dict(adapter_type="houlsby", adapter_size=4),
    dict(adapter_type="pfeiffer", adapter_size=4, lora_rank=2, lora_targets=("query", "value")),
])
def test_lora_and_adapters_start_as_the_plain_relative_block(kwargs):
    plain = _block(2)
    adapted = TransformerEncoderBlock(num_heads=HEADS, intermediate_size=20, dropout=0.0, attention_dropout=0.0,
                                      max_relative_position=2, **kwargs)
    adapted.build((None, None, WIDTH))
    _copy(plain, adapted)
    x, mask = _inputs(), _mask()
    np.testing.assert_allclose(adapted(x, padding_mask=mask), plain(x, padding_mask=mask), atol=1e-6)
    assert isinstance(adapted.attention, RelativeMultiHeadAttention)
    trainable = {v.path.split("/", 1)[1] for v in adapted.trainable_weights}
    assert "attention/relative_key_embeddings" in trainable


def test_lora_update_goes_through_the_relative_attention():
    """A non-zero LoRA update on the query equals the plain relative block with the merged kernel."""
    adapted = TransformerEncoderBlock(num_heads=HEADS, intermediate_size=20, dropout=0.0, attention_dropout=0.0,
                                      max_relative_position=2, lora_rank=2, lora_targets=("query", "value"))
    adapted.build((None, None, WIDTH))
    plain = _block(2)
    _copy(plain, adapted)
    rng = np.random.default_rng(3)
    for target in ("query", "value"):
        lora = adapted.lora_layers()[target]
        lora.lora_b.assign(rng.standard_normal(lora.lora_b.shape).astype("float32"))
        dense = plain.projection(target)
        delta = (np.asarray(lora.lora_a) @ np.asarray(lora.lora_b)) * lora.scale
        dense.kernel.assign(np.asarray(dense.kernel) + delta.reshape(dense.kernel.shape))
    x, mask = _inputs(), _mask()
    np.testing.assert_allclose(adapted(x, padding_mask=mask), plain(x, padding_mask=mask), atol=1e-5)


def test_relative_embeddings_get_gradients():
    block = _block(2)
    x, mask = tf.constant(_inputs()), _mask()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(block(x, padding_mask=mask, training=True) ** 2)
    grads = tape.gradient(loss, [block.attention.relative_key_embeddings, block.attention.relative_value_embeddings])
    assert all(g is not None and float(tf.reduce_max(tf.abs(tf.convert_to_tensor(g)))) > 0 for g in grads)


# --------------------------------------------------------------------------- serialisation
def test_keras_round_trip(tmp_path):
    block = _block(3, values=False, lora_rank=2)
    inputs = keras.Input((None, WIDTH)), keras.Input((None,), dtype="int32")
    model = keras.Model(inputs, block(inputs[0], padding_mask=inputs[1]))
    path = str(tmp_path / "block.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x, mask = _inputs(), _mask()
    np.testing.assert_allclose(loaded([x, mask]), model([x, mask]), atol=1e-6)
    (reloaded,) = [l for l in loaded.layers if isinstance(l, TransformerEncoderBlock)]
    config = reloaded.get_config()
    assert (config["max_relative_position"], config["relative_position_values"]) == (3, False)
    assert isinstance(reloaded.attention, RelativeMultiHeadAttention)
    assert reloaded.attention.relative_value_embeddings is None
    assert {v.path.split("/", 1)[1] for v in reloaded.weights} == {v.path.split("/", 1)[1] for v in block.weights}
    att = RelativeMultiHeadAttention.from_config(block.attention.get_config())
    assert (att.max_relative_position, att.relative_values) == (3, False)


def test_layer_arguments_are_checked():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_relative_position"):
            RelativeMultiHeadAttention(max_relative_position=bad, num_heads=2, key_dim=2)
    with pytest.raises(ValueError, match="max_relative_position"):
        TransformerEncoderBlock(num_heads=2, intermediate_size=4, max_relative_position=-2)
    with pytest.raises(ValueError, match="relative_position_values"):
        TransformerEncoderBlock(num_heads=2, intermediate_size=4, max_relative_position=2,
                                relative_position_values="yes")


# --------------------------------------------------------------------------- config files
def _config_file(tmp_path, **changes):
    data = BertConfig(vocab_size=10, hidden_size=8, num_attention_heads=2).to_dict()
    data.update(changes)
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_config_round_trips_through_official_json(tmp_path):
    config = BertConfig(vocab_size=10, hidden_size=8, num_attention_heads=2, max_relative_position=4,
                        relative_position_values=False, use_absolute_positions=False)
    path = config.to_json_file(tmp_path / "bert_config.json")
    data = json.loads(open(path).read())
    assert (data["max_relative_position"], data["relative_position_values"], data["use_absolute_positions"]) == (
        4, False, False)
    loaded = BertConfig.from_json_file(path)
    assert loaded == config and loaded.relative_positions and loaded.max_sequence_length is None
    plain = BertConfig(vocab_size=10, hidden_size=8, num_attention_heads=2)
    assert "max_relative_position" not in plain.to_dict() and not plain.relative_positions
    with pytest.raises(ValueError, match="format='official'"):
        config.to_dict("hf")


@pytest.mark.parametrize("changes, key", [
    ({"max_relative_position": -1}, "max_relative_position"),
    ({"max_relative_position": "8"}, "max_relative_position"),
    ({"max_relative_position": True}, "max_relative_position"),
    ({"max_relative_position": 2.0}, "max_relative_position"),
    ({"max_relative_position": 2, "relative_position_values": "yes"}, "relative_position_values"),
    ({"max_relative_position": 2, "use_absolute_positions": 0}, "use_absolute_positions"),
    ({"use_absolute_positions": False}, "use_absolute_positions"),  # no positions at all
    ({"max_relative_position": 2, "num_hidden_groups": 1}, "max_relative_position"),  # ALBERT
    ({"max_relative_position": 2, "embedding_size": 8}, "max_relative_position"),  # ELECTRA
])
def test_config_errors_name_file_and_key(tmp_path, changes, key):
    path = _config_file(tmp_path, **changes)
    with pytest.raises(ValueError) as e:
        BertConfig.from_json_file(path)
    assert path in str(e.value) and f"`{key}`" in str(e.value)
