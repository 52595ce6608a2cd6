"""A parameter-efficient model saved as `.keras` reloads with the same freezing and optimizer state.

Keras serialises a layer's own `trainable` flag but not per-variable flags, nor the flags of
sub-layers a layer builds itself: before `frozen_parts`, a reloaded LoRA classifier trained the
whole encoder (41 trainable weights instead of 22) and Keras dropped the optimizer state
("Skipping variable loading for optimizer ..."). Each test trains a tiny model two steps, saves
it, reloads it, trains both one more step on the same batch and compares.
"""

import warnings

import keras
import numpy as np
import pytest

from kzoo import training
from kzoo.configs import BertConfig
from kzoo.models import bert_classifier, bert_encoder, bert_span_labeler, bert_token_classifier
from kzoo.models.adaptation import enable_parameter_efficient_training
from tests.conftest import random_inputs

CONFIG = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
                    max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
BATCH, SEQ = 4, 6
SCCE = dict(from_logits=True)


def _classifier(norm_first=False, **kwargs):
    return bert_classifier(bert_encoder(CONFIG, norm_first=norm_first, **kwargs), num_classes=3, dropout=0.0)


def _span_labeler(**kwargs):
    return bert_span_labeler(bert_encoder(CONFIG, **kwargs))


def _token_classifier(norm_first=False, **kwargs):
    return bert_token_classifier(bert_encoder(CONFIG, norm_first=norm_first, **kwargs), num_tags=3, dropout=0.0)


def _labels(kind, rng):
    if kind == "span":
        return {"start_logits": rng.integers(0, SEQ, BATCH), "end_logits": rng.integers(0, SEQ, BATCH)}
    if kind == "tokens":
        return rng.integers(0, 3, (BATCH, SEQ))
    return rng.integers(0, 3, BATCH)


def _loss(kind):
    if kind == "span":
        return {name: keras.losses.SparseCategoricalCrossentropy(**SCCE) for name in ("start_logits", "end_logits")}
    return keras.losses.SparseCategoricalCrossentropy(**SCCE)


CASES = {  # name: (model kind, build, encoder options, enable_parameter_efficient_training options)
    "classifier-lora": ("classes", _classifier, dict(lora_rank=2), {}),
    "classifier-houlsby": ("classes", _classifier, dict(adapter_type="houlsby", adapter_size=4), {}),
    "classifier-lora-all-targets-pre-ln-narrow": (
        "classes", _classifier,
        dict(norm_first=True, lora_rank=2, lora_targets=("query", "key", "value", "attention_output", "intermediate")),
        dict(train_layer_norms=False)),
    "span-labeler-pfeiffer-lora": ("span", _span_labeler, dict(adapter_type="pfeiffer", adapter_size=4, lora_rank=2),
                                   dict(train_layer_norms=False)),
    "token-classifier-houlsby-pre-ln": ("tokens", _token_classifier,
                                        dict(norm_first=True, adapter_type="houlsby", adapter_size=4), {}),
    "classifier-lora-frozen-pooler": ("classes", _classifier, dict(lora_rank=2), dict(train_pooler=False)),
}


def _params():
    for name in CASES:
        yield pytest.param(name, id=name)


def _values(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


@pytest.mark.parametrize("name", _params())
def test_reloaded_model_trains_on_exactly_like_the_saved_one(tmp_path, name):
    kind, build, encoder_kwargs, options = CASES[name]
    keras.utils.set_random_seed(0)
    model = build(**encoder_kwargs)
    rng = np.random.default_rng(0)
    for v in model.weights:  # adapters and LoRA B start at zero: move everything off its initial value
        v.assign(np.asarray(v) + rng.normal(0.0, 0.02, v.shape).astype(v.dtype))
    trainable = enable_parameter_efficient_training(model, **options)
    paths = [v.path for v in trainable]
    multipliers = training.layerwise_lr_groups(model, decay=0.8) if kind == "classes" else None
    model.compile(optimizer=training.create_optimizer(1e-2, 10, 2, schedule="cosine", lr_multipliers=multipliers),
                  loss=_loss(kind))
    x, y = random_inputs(BATCH, SEQ, CONFIG.vocab_size, seed=1), _labels(kind, rng)
    for _ in range(2):
        model.train_on_batch(x, y)

    path = str(tmp_path / "model.keras")
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reloaded = keras.models.load_model(path)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "Skipping variable loading" in m], messages

    # the same trainable variables, in the same order, and the optimizer state that goes with them
    assert [v.path for v in reloaded.trainable_weights] == [v.path for v in model.trainable_weights] == paths
    assert [v.path for v in reloaded.weights] == [v.path for v in model.weights]
    assert len(reloaded.optimizer.variables) == len(model.optimizer.variables) == 2 * len(paths) + 1
    assert int(reloaded.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 2
    for got, want in zip(_values(reloaded.optimizer.variables), _values(model.optimizer.variables)):
        np.testing.assert_array_equal(got, want)

    frozen = [v for v in reloaded.weights if not v.trainable]
    frozen_before = _values(frozen)
    trainable_before = _values(reloaded.trainable_weights)
    model.train_on_batch(x, y)
    reloaded.train_on_batch(x, y)
    for got, want, variable in zip(_values(reloaded.weights), _values(model.weights), model.weights):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=variable.path)
    for before, after, variable in zip(frozen_before, _values(frozen), frozen):
        np.testing.assert_array_equal(after, before, err_msg=variable.path)
    stuck = [p for p, a, b in zip(paths, trainable_before, _values(reloaded.trainable_weights)) if np.array_equal(a, b)]
    unused = ("pooler/",) if kind != "classes" else ()  # span and tag heads read the sequence output only
    assert not [p for p in stuck if not p.startswith(unused)], stuck
