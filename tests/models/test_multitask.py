import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.data.masking import MLMMasker
from kzoo.layers.masked_lm import MaskedLMHead
from kzoo.models.classifier import bert_classifier
from kzoo.models.multitask import auxiliary_mlm_dataset, auxiliary_mlm_losses, with_auxiliary_mlm
from tests.conftest import random_inputs

P = 4


def _batch(config, n=8, seq=10, seed=0):
    inputs = random_inputs(n, seq, config.vocab_size, seed=seed)
    ids = inputs["input_word_ids"]
    ids[ids <= 4] = 5  # keep ids 0..4 for [PAD], [UNK], [CLS], [SEP], [MASK]
    ids[:, 0] = 2
    for row, mask in zip(ids, inputs["input_mask"]):
        row[mask.sum() - 1] = 3
        row[mask == 0] = 0
    labels = np.random.default_rng(seed).integers(0, 2, n).astype("int32")
    masker = MLMMasker(config.vocab_size, 4, [0, 2, 3], masked_lm_prob=0.3, max_predictions_per_seq=P, seed=seed)
    ds = auxiliary_mlm_dataset(tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(n), masker)
    x, y = next(iter(ds))
    return {k: v.numpy() for k, v in x.items()}, {k: v.numpy() for k, v in y.items()}


@pytest.fixture
def classifier(tiny_config):
    keras.utils.set_random_seed(0)
    return bert_classifier(tiny_config, num_classes=2)


def test_reported_mlm_loss_is_mean_over_real_positions(tiny_config, classifier):
    model = with_auxiliary_mlm(classifier, max_predictions_per_seq=P)
    head = model.get_layer("mlm")
    rng = np.random.default_rng(1)
    head.output_bias.assign(rng.normal(size=head.output_bias.shape).astype("float32"))
    loss, loss_weights = auxiliary_mlm_losses(aux_weight=0.3)
    model.compile(optimizer="adam", loss=loss, loss_weights=loss_weights)
    x, y = _batch(tiny_config)
    valid = y["mlm_logits"] != -100
    assert 0 < valid.sum() < valid.size  # some padding targets to ignore

    out = model(x, training=False)
    logits = out["mlm_logits"].numpy().astype(np.float64)
    assert logits.shape == (8, P, tiny_config.vocab_size)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want_mlm = -np.mean(np.take_along_axis(log_probs, np.maximum(y["mlm_logits"], 0)[..., None], -1)[..., 0][valid])
    cls = out["logits"].numpy().astype(np.float64)
    cls_log_probs = cls - np.log(np.exp(cls).sum(-1, keepdims=True))
    want_cls = -np.mean(cls_log_probs[np.arange(8), y["logits"]])

    got = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    np.testing.assert_allclose(got["mlm_logits_loss"], want_mlm, rtol=1e-5)
    np.testing.assert_allclose(got["logits_loss"], want_cls, rtol=1e-5)
    np.testing.assert_allclose(got["loss"], want_cls + 0.3 * want_mlm, rtol=1e-5)
    # The classifier output is the classifier on the clean inputs.
    np.testing.assert_allclose(cls, classifier({k: x[k] for k in classifier.input}, training=False).numpy(), atol=1e-6)


def test_training_fine_tunes_the_classifier_itself(tiny_config, classifier):
    model = with_auxiliary_mlm(classifier)
    head = model.get_layer("mlm")
    assert isinstance(head, MaskedLMHead) and head.tied
    ids = {id(v) for v in model.trainable_variables}
    assert {id(v) for v in classifier.trainable_variables} <= ids
    extra = [v for v in model.trainable_variables if id(v) not in {id(w) for w in classifier.trainable_variables}]
    assert sorted(v.path for v in extra) == sorted(v.path for v in head.trainable_variables)
    assert len(extra) == 5  # transform kernel/bias, LayerNorm gamma/beta, output bias: the table is the encoder's

    loss, loss_weights = auxiliary_mlm_losses(aux_weight=1.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, loss_weights=loss_weights)
    x, y = _batch(tiny_config, n=16, seed=2)
    before_weights = [v.numpy() for v in classifier.trainable_variables]
    before = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    model.fit(x, y, batch_size=16, epochs=8, verbose=0, shuffle=False)
    after = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert after["loss"] < 0.8 * before["loss"], (before, after)
    assert after["mlm_logits_loss"] < before["mlm_logits_loss"]
    changed = [not np.array_equal(b, v.numpy()) for b, v in zip(before_weights, classifier.trainable_variables)]
    assert all(changed)  # every classifier variable (word table included) was trained
    clean = {k: x[k] for k in classifier.input}
    np.testing.assert_allclose(model(x)["logits"].numpy(), classifier(clean).numpy(), atol=1e-6)


def test_untied_head_rejected(classifier, tiny_config):
    with pytest.raises(ValueError, match="not tied"):
        with_auxiliary_mlm(classifier, MaskedLMHead(tiny_config.vocab_size, tiny_config.hidden_size))
