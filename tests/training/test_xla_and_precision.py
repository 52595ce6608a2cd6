"""The TPU path (static shapes + jit_compile) and mixed precision for every head.

Each model trains a few steps on a fixed batch with XLA on CPU; under the
mixed policies the logits and the loss stay float32 and mixed_float16 gets a
loss-scale optimizer.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.data.conll import IGNORE_LABEL
from kzoo.models import bert_classifier, bert_encoder, bert_span_labeler, bert_token_classifier
from kzoo.models.pretrainer import bert_pretrainer, pretraining_losses
from kzoo.training import dtype_policy_scope
from kzoo.tasks.squad import squad_losses
from tests.conftest import random_inputs

SEQ, BATCH = 16, 4


def _task(kind, config):
    """(model, loss, loss_weights, x, y) for one head, static shapes throughout."""
    x = random_inputs(BATCH, SEQ, config.vocab_size, seed=1, lengths=[16, 12, 9, 16])
    rng = np.random.default_rng(2)
    if kind == "classifier":
        model = bert_classifier(bert_encoder(config, seq_length=SEQ, dropout=0.0), num_classes=3, dropout=0.0,
                                seq_length=SEQ)
        return model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), None, x, np.array([0, 1, 2, 1])
    if kind == "span_labeler":
        model = bert_span_labeler(bert_encoder(config, seq_length=SEQ, dropout=0.0), seq_length=SEQ)
        loss, weights = squad_losses(model)
        return model, loss, weights, x, {"start_logits": np.array([1, 2, 3, 4]), "end_logits": np.array([2, 2, 5, 6])}
    if kind == "tagger":
        model = bert_token_classifier(bert_encoder(config, seq_length=SEQ, dropout=0.0), num_tags=5, dropout=0.0,
                                      seq_length=SEQ)
        tags = rng.integers(0, 5, (BATCH, SEQ)).astype("int32")
        tags[x["input_mask"] == 0] = IGNORE_LABEL
        tags[:, 0] = IGNORE_LABEL
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_LABEL)
        return model, loss, None, x, tags
    model = bert_pretrainer(bert_encoder(config, seq_length=SEQ, dropout=0.0))
    positions = np.tile(np.array([[1, 3, 5]], "int32"), (BATCH, 1))
    x = dict(x, masked_lm_positions=positions)
    ids = np.take_along_axis(x["input_word_ids"], positions, axis=1).astype("int32")
    ids[:, -1] = IGNORE_LABEL
    return model, pretraining_losses(), None, x, {"mlm_logits": ids, "nsp_logits": np.array([0, 1, 1, 0])}


def _dataset(x, y, steps):
    return tf.data.Dataset.from_tensors((x, y)).repeat(steps)


# The classifier here; the span labeler and the tagger train under jit_compile through their workflows
# in tests/tasks/test_static_workflows.py, the pretrainer in tests/models/test_pretrainer.py.
@pytest.mark.parametrize("kind", ["classifier"])
def test_trains_under_xla_with_static_shapes(kind, tiny_config):
    keras.utils.set_random_seed(0)
    model, loss, weights, x, y = _task(kind, tiny_config)
    model.compile(optimizer=keras.optimizers.Adam(5e-3), loss=loss, loss_weights=weights, jit_compile=True)
    assert model.jit_compile
    before = model.evaluate(x, y, verbose=0, batch_size=BATCH)
    start = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(_dataset(x, y, 12), verbose=0)
    after = model.evaluate(x, y, verbose=0, batch_size=BATCH)
    before = before[0] if isinstance(before, list) else before
    after = after[0] if isinstance(after, list) else after
    assert np.isfinite(after) and after < before
    moved = [not np.array_equal(a, w.numpy()) for a, w in zip(start, model.trainable_weights)]
    assert sum(moved) > 0.8 * len(moved)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("kind", ["classifier", "span_labeler", "tagger", "pretrainer"])
def test_mixed_precision_keeps_logits_and_loss_float32(kind, policy, tiny_config):
    keras.utils.set_random_seed(0)
    with dtype_policy_scope(policy):
        model, loss, weights, x, y = _task(kind, tiny_config)
    assert keras.config.dtype_policy().name == "float32"  # the scope restored the global policy
    compute = "bfloat16" if policy == "mixed_bfloat16" else "float16"
    assert model.dtype_policy.name == policy
    encoder = [l for l in model.layers if isinstance(l, keras.Model)][0]
    encoded = encoder({k: x[k] for k in ("input_word_ids", "input_mask", "input_type_ids")})
    assert encoded["sequence_output"].dtype == compute  # the encoder really computes in 16 bits
    outputs = model(x)
    for out in (outputs.values() if isinstance(outputs, dict) else [outputs]):
        assert out.dtype == "float32"
    assert all(w.dtype == "float32" for w in model.weights)  # variables stay float32
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, loss_weights=weights)
    value = model.compute_loss(x, y, outputs)
    assert value.dtype == "float32" and np.isfinite(float(value))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_fit(policy, tiny_config):
    keras.utils.set_random_seed(0)
    with dtype_policy_scope(policy):
        model, loss, weights, x, y = _task("pretrainer", tiny_config)
    model.compile(optimizer=keras.optimizers.Adam(5e-3), loss=loss, loss_weights=weights)
    history = model.fit(_dataset(x, y, 10), epochs=2, verbose=0).history
    assert np.isfinite(history["loss"]).all() and history["loss"][1] < history["loss"][0]
    if policy == "mixed_float16":
        assert float(model.optimizer.dynamic_scale) > 1.0  # dynamic loss scaling is active
