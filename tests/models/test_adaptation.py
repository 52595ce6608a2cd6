import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.checkpoints import load_pretrained
from kzoo.configs import BertConfig
from kzoo.layers import BottleneckAdapter, LowRankAdapter, TransformerEncoderBlock
from kzoo.models import bert_classifier, bert_encoder
from kzoo.models.adaptation import (
    enable_parameter_efficient_training,
    load_adaptation_weights,
    merge_lora,
    save_adaptation_weights,
)
from kzoo.models.encoder import encoder_inputs
from tests.conftest import REPO, random_inputs

ALL_TARGETS = ("query", "key", "value", "attention_output", "intermediate", "output")
HOULSBY = dict(adapter_type="houlsby", adapter_size=4)
LORA = dict(lora_rank=2, lora_alpha=4, lora_targets=ALL_TARGETS)


def copy_pretrained(source, model):
    """Copies a plain encoder's weights into the same-path variables of `model`."""
    by_path = {v.path: v for v in model.weights}
    for v in source.weights:
        by_path[v.path].assign(v)


def randomise_adaptation(model, seed=0, scale=0.1):
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(recursive=True):
        if isinstance(layer, (BottleneckAdapter, LowRankAdapter)):
            for v in layer.weights:
                v.assign(rng.normal(size=v.shape).astype("float32") * scale)


def snapshot(model):
    return {id(v): np.array(v) for v in model.weights}


def labelled(config, n=8, seq=6, seed=0):
    x = random_inputs(n, seq, config.vocab_size, seed=seed)
    y = np.random.default_rng(seed).integers(0, 3, n)
    return x, y


def fit(model, config, steps=3, jit_compile=False, lr=1e-2):
    model.compile(optimizer=keras.optimizers.Adam(lr), jit_compile=jit_compile,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = labelled(config)
    return model.fit(x, y, batch_size=4, epochs=(steps + 1) // 2, verbose=0)


@pytest.mark.parametrize("norm_first, kind", [
    (False, HOULSBY), (False, dict(adapter_type="pfeiffer", adapter_reduction_factor=4)), (False, LORA),
    (True, {**HOULSBY, **LORA}),
])
def test_encoder_outputs_are_exactly_unchanged_at_init(tiny_config, norm_first, kind):
    plain = bert_encoder(tiny_config, norm_first=norm_first)
    adapted = bert_encoder(tiny_config, norm_first=norm_first, **kind)
    copy_pretrained(plain, adapted)
    inputs = random_inputs(3, 7, tiny_config.vocab_size)
    want, got = plain(inputs), adapted(inputs)
    np.testing.assert_array_equal(got["sequence_output"], want["sequence_output"])
    np.testing.assert_array_equal(got["pooled_output"], want["pooled_output"])
    assert len(adapted.weights) > len(plain.weights)


def test_minilm_official_checkpoint_loads_into_adapted_encoder_unchanged(minilm_official_folder):
    plain = load_pretrained(minilm_official_folder)
    adapted = load_pretrained(minilm_official_folder, strict=True, adapter_type="houlsby", adapter_size=64, lora_rank=4)
    assert adapted.format == "official" and adapted.report.loaded == plain.report.loaded
    new = [v.path for v in adapted.encoder.weights if "adapter" in v.path or "_lora/" in v.path]
    assert sorted(adapted.report.missing) == sorted(new) and len(new) == 6 * (8 + 4)
    inputs = random_inputs(2, 12, plain.config.vocab_size, seed=3)
    want, got = plain.encoder(inputs), adapted.encoder(inputs)
    np.testing.assert_array_equal(got["sequence_output"], want["sequence_output"])
    np.testing.assert_array_equal(got["pooled_output"], want["pooled_output"])


def test_bert_encoder_validates_adapter_arguments(tiny_config):
    with pytest.raises(ValueError, match="unknown adapter_type 'bottleneck'"):
        bert_encoder(tiny_config, adapter_type="bottleneck")
    with pytest.raises(ValueError, match="adapter_reduction_factor must be positive"):
        bert_encoder(tiny_config, adapter_type="houlsby", adapter_reduction_factor=0)
    with pytest.raises(ValueError, match="leaves no bottleneck"):
        bert_encoder(tiny_config, adapter_type="houlsby", adapter_reduction_factor=32)
    with pytest.raises(ValueError, match=r"unknown lora_targets \['ffn'\]"):
        bert_encoder(tiny_config, lora_rank=4, lora_targets=("ffn",))
    encoder = bert_encoder(tiny_config, adapter_type="pfeiffer", adapter_reduction_factor=4)
    assert {l.get_config()["adapter_size"] for l in encoder.layers if isinstance(l, TransformerEncoderBlock)} == {4}


def test_only_adaptation_parameters_train_and_frozen_ones_stay_bitwise(tiny_config):
    h, m, r, layers = 16, 4, 2, tiny_config.num_hidden_layers
    model = bert_classifier(tiny_config, num_classes=3, **HOULSBY, lora_rank=r)
    trainable = enable_parameter_efficient_training(model)
    paths = {v.path for v in trainable}
    kinds = {"adapter": 0, "_lora/": 0, "layer_norm": 0, "pooler/": 0, "classifier/": 0}
    for path in paths:
        (kind,) = [k for k in kinds if k in path]
        kinds[kind] += 1
    assert kinds == {"adapter": 8 * layers, "_lora/": 4 * layers, "layer_norm": 2 + 4 * layers, "pooler/": 2,
                     "classifier/": 2}
    count = sum(int(np.prod(v.shape)) for v in trainable)
    assert count == layers * (2 * (h * m + m + m * h + h) + 2 * r * (h + h) + 4 * h) + 2 * h + (h * h + h) + (h * 3 + 3)

    before = snapshot(model)
    fit(model, tiny_config, steps=4)
    trained = {id(v) for v in trainable}
    for v in model.weights:
        if id(v) in trained:
            assert np.any(np.asarray(v) != before[id(v)]), f"{v.path} did not move"
        else:
            np.testing.assert_array_equal(np.asarray(v), before[id(v)], err_msg=v.path)

    narrow = enable_parameter_efficient_training(model, train_layer_norms=False, train_pooler=False)
    assert {v.path for v in narrow} == {p for p in paths if "layer_norm" not in p and "pooler" not in p}


def test_enable_requires_adapters_or_lora(tiny_config):
    with pytest.raises(ValueError, match="has neither adapters nor LoRA"):
        enable_parameter_efficient_training(bert_classifier(tiny_config, num_classes=2))


def test_keras_file_round_trip_with_adapters_and_lora(tmp_path, tiny_config):
    encoder = bert_encoder(tiny_config, **HOULSBY, **LORA)
    randomise_adaptation(encoder)
    inputs = random_inputs(2, 6, tiny_config.vocab_size)
    encoder.save(tmp_path / "adapted.keras")
    reloaded = keras.models.load_model(tmp_path / "adapted.keras")
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_array_equal(encoder(inputs)[key], reloaded(inputs)[key])
    block = reloaded.get_layer("transformer_layer_1")
    assert block.get_config()["lora_targets"] == list(ALL_TARGETS)
    assert not any(v.trainable for t in ALL_TARGETS for v in block.projection(t).weights)


def test_jit_compiled_fit_and_mirrored_strategy(tiny_config):
    tiny_config = BertConfig(**{**tiny_config.to_dict(), "num_hidden_layers": 1})
    model = bert_classifier(tiny_config, num_classes=3, **HOULSBY, lora_rank=2)
    enable_parameter_efficient_training(model)
    history = fit(model, tiny_config, steps=2, jit_compile=True)
    assert np.isfinite(history.history["loss"]).all()

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        mirrored = bert_classifier(tiny_config, num_classes=3, adapter_type="pfeiffer", adapter_size=4, lora_rank=2)
        enable_parameter_efficient_training(mirrored, train_layer_norms=False)
        frozen = [v for v in mirrored.weights if not v.trainable]
        before = [np.array(v) for v in frozen]
        history = fit(mirrored, tiny_config, steps=2)
    assert np.isfinite(history.history["loss"]).all()
    for v, value in zip(frozen, before):
        np.testing.assert_array_equal(np.asarray(v), value, err_msg=v.path)


@pytest.mark.parametrize("what", ["classifier", "encoder"])
def test_merge_lora_folds_updates_into_base_kernels(tiny_config, what):
    kwargs = dict(**HOULSBY, **LORA)
    model = (bert_classifier(tiny_config, num_classes=3, **kwargs) if what == "classifier"
             else bert_encoder(tiny_config, **kwargs))
    randomise_adaptation(model, scale=0.3)
    merged = merge_lora(model)
    assert type(merged) is type(model) and merged is not model
    assert not any("lora" in v.path for v in merged.weights)
    assert not any(isinstance(l, LowRankAdapter) for l in merged._flatten_layers(recursive=True))
    blocks = [l for l in merged._flatten_layers(recursive=True) if isinstance(l, TransformerEncoderBlock)]
    assert len(blocks) == 2 and all(b.lora_rank == 0 and b.adapter_type == "houlsby" for b in blocks)
    assert len(merged.weights) == len(model.weights) - 2 * 2 * len(ALL_TARGETS)

    inputs = random_inputs(3, 7, tiny_config.vocab_size)
    want, got = model(inputs), merged(inputs)
    if what == "encoder":
        want, got = want["sequence_output"], got["sequence_output"]
    np.testing.assert_allclose(got, want, atol=1e-5)
    original = [l for l in model._flatten_layers(recursive=True) if isinstance(l, TransformerEncoderBlock)]
    for old_block, new_block in zip(original, blocks):
        for target in ALL_TARGETS:  # the updates are not negligible
            base, folded = old_block.projection(target), new_block.projection(target)
            assert np.abs(np.asarray(folded.kernel) - np.asarray(base.kernel)).max() > 1e-2
            np.testing.assert_array_equal(folded.bias, base.bias)
        np.testing.assert_array_equal(new_block.ffn_adapter.down.kernel, old_block.ffn_adapter.down.kernel)
    with pytest.raises(ValueError, match="has no LoRA"):
        merge_lora(merged)


def _custom_head_model(config, **kwargs):
    """An encoder with an automatically named (per-process uniquified) Dense head."""
    encoder = bert_encoder(config, **kwargs)
    inputs = encoder_inputs()
    logits = keras.layers.Dense(3)(encoder(inputs)["pooled_output"])
    return keras.Model(inputs, logits)


@pytest.mark.parametrize("kind", ["adapters", "lora"])
def test_adaptation_file_reproduces_the_trained_model(tmp_path, tiny_config, kind):
    config = BertConfig(vocab_size=512, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=32)
    kwargs = HOULSBY if kind == "adapters" else dict(lora_rank=2)
    pretrained = bert_encoder(config)
    trained, fresh = (_custom_head_model(config, **kwargs) for _ in range(2))
    assert [v.path for v in trained.weights] != [v.path for v in fresh.weights]  # dense_N vs dense_M
    for model in (trained, fresh):
        copy_pretrained(pretrained, model)
        enable_parameter_efficient_training(model)
    before = snapshot(trained)
    fit(trained, config, steps=4)
    moved = [v.path for v in trained.weights if np.any(np.asarray(v) != before[id(v)])]
    assert any("adapter" in p or "_lora/" in p for p in moved) and any(p.startswith("dense") for p in moved)

    path = str(tmp_path / "task.npz")
    assert save_adaptation_weights(trained, path) == path
    assert sorted(os.listdir(tmp_path)) == ["task.npz"]  # no temporary file left
    names = load_adaptation_weights(fresh, path)
    assert len(names) == len(trained.trainable_weights) and "dense/kernel" in names
    inputs = random_inputs(4, 9, config.vocab_size, seed=7)
    np.testing.assert_array_equal(fresh.predict(inputs, verbose=0), trained.predict(inputs, verbose=0))
    full_bytes = sum(np.asarray(v).nbytes for v in trained.weights)
    assert os.path.getsize(path) < full_bytes / 5, (os.path.getsize(path), full_bytes)

    if kind == "adapters":  # a separate process names the variables the same way
        pretrained.save_weights(str(tmp_path / "pretrained.weights.h5"))
        np.save(tmp_path / "want.npy", trained.predict(inputs, verbose=0))
        np.savez(tmp_path / "inputs.npz", **inputs)
        script = f"""
import sys, numpy as np
sys.path.insert(0, {REPO!r})
from kzoo.configs import BertConfig
from kzoo.models import bert_encoder
from kzoo.models.adaptation import enable_parameter_efficient_training, load_adaptation_weights
from tests.models.test_adaptation import _custom_head_model, copy_pretrained
config = BertConfig(**{config.to_dict()!r})
pretrained = bert_encoder(config)
pretrained.load_weights(sys.argv[1] + "/pretrained.weights.h5")
model = _custom_head_model(config, adapter_type="houlsby", adapter_size=4)
copy_pretrained(pretrained, model)
enable_parameter_efficient_training(model)
load_adaptation_weights(model, sys.argv[1] + "/task.npz")
inputs = dict(np.load(sys.argv[1] + "/inputs.npz"))
np.testing.assert_array_equal(model.predict(inputs, verbose=0), np.load(sys.argv[1] + "/want.npy"))
print("same outputs")
"""
        run = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                             timeout=300, cwd=REPO)
        assert run.returncode == 0 and "same outputs" in run.stdout, run.stderr[-3000:]


def test_loading_checks_names_and_shapes_before_assigning(tmp_path, tiny_config):
    model = bert_classifier(tiny_config, num_classes=3, **HOULSBY)
    enable_parameter_efficient_training(model)
    randomise_adaptation(model)
    path = str(tmp_path / "a.npz")
    save_adaptation_weights(model, path)

    def check(target, match):
        before = snapshot(target)
        with pytest.raises(ValueError, match=match):
            load_adaptation_weights(target, path)
        for v in target.weights:
            np.testing.assert_array_equal(np.asarray(v), before[id(v)])

    wider = bert_classifier(tiny_config, num_classes=3, adapter_type="houlsby", adapter_size=5)
    enable_parameter_efficient_training(wider)
    check(wider, rf"{path}: .*wrong shape for bert_encoder/transformer_layer_0/attention_adapter/down/kernel: "
                 r"file has \[16, 4\], model variable .* needs \[16, 5\]")
    pfeiffer = bert_classifier(tiny_config, num_classes=3, adapter_type="pfeiffer", adapter_size=4)
    enable_parameter_efficient_training(pfeiffer)
    check(pfeiffer, rf"{path}: .*unexpected variable bert_encoder/transformer_layer_0/attention_adapter/down/kernel")
    with_lora = bert_classifier(tiny_config, num_classes=3, **HOULSBY, lora_rank=2)
    enable_parameter_efficient_training(with_lora)
    check(with_lora, rf"{path}: .*missing variable bert_encoder/transformer_layer_0/query_lora/lora_a")
    same = bert_classifier(tiny_config, num_classes=3, **HOULSBY)
    enable_parameter_efficient_training(same)
    load_adaptation_weights(same, path)
    np.testing.assert_array_equal(same.get_layer("bert_encoder").get_layer("transformer_layer_1").ffn_adapter.up.kernel,
                                  model.get_layer("bert_encoder").get_layer("transformer_layer_1").ffn_adapter.up.kernel)
