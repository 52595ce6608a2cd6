"""ELECTRA replaced-token-detection pretrainer: sharing, corruption, labels, loss, training, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.configs import BertConfig
from kzoo.data.masking import MLMMasker
from kzoo.layers import BertEmbeddings, MaskedLMHead, TransformerEncoderBlock
from kzoo.models.classifier import bert_classifier
from kzoo.models.electra import METRIC_NAMES, ElectraPretrainer, electra_pretrainer
from kzoo.models.encoder import bert_encoder

CLS, SEP, MASK = 2, 3, 4
SEQ, P = 12, 3


def _batch():
    """Two rows: row 0 has 2 real masked slots and one padding slot (position 0),
    row 1 has no masked slot at all (all padding slots)."""
    ids = np.array([[CLS, 10, MASK, 12, MASK, 14, SEP, 0, 0, 0, 0, 0],
                    [CLS, 20, 21, 22, 23, 24, 25, 26, 27, SEP, 0, 0]], "int32")
    mask = (np.arange(SEQ)[None, :] < np.array([[7], [10]])).astype("int32")
    x = {"input_word_ids": ids, "input_mask": mask, "input_type_ids": np.zeros_like(ids),
         "masked_lm_positions": np.array([[2, 4, 0], [0, 0, 0]], "int32")}
    y = {"mlm_logits": np.array([[11, 30, -100], [-100, -100, -100]], "int32")}
    return x, y


def _force_sample(model, token):
    """Makes the generator put (almost) all its mass on `token`."""
    bias = np.zeros(model.generator_head.vocab_size, "float32")
    bias[token] = 1e4
    model.generator_head.output_bias.assign(bias)


def test_shared_embeddings_and_generator_size(tiny_config):
    encoder = bert_encoder(tiny_config)
    model = electra_pretrainer(encoder, generator_num_layers=1, generator_intermediate_size=8,
                               generator_num_heads=2, seed=0)
    assert model.discriminator is encoder
    (shared,) = [l for l in encoder.layers if isinstance(l, BertEmbeddings)]
    (gen_embeddings,) = [l for l in model.generator.layers if isinstance(l, BertEmbeddings)]
    assert gen_embeddings is shared is model.shared_embeddings
    head = model.generator_head
    assert isinstance(head, MaskedLMHead) and head.tied_variable is shared.word_embeddings.embeddings
    # Every variable exactly once; the shared ones among the generator's and the discriminator's.
    ids = [id(w) for w in model.weights]
    assert len(ids) == len(set(ids))
    shared_ids = {id(w) for w in shared.weights}
    assert shared_ids <= {id(w) for w in model.generator.weights}
    assert shared_ids <= {id(w) for w in encoder.weights}
    assert sum(i in shared_ids for i in ids) == len(shared_ids) == 5
    assert len(model.weights) == len({id(w) for w in encoder.weights + model.generator.weights
                                      + model.rtd_dense.weights + model.rtd_logit.weights})
    blocks = [l for l in model.generator.layers if isinstance(l, TransformerEncoderBlock)]
    assert [(b.num_heads, b.intermediate_size) for b in blocks] == [(2, 8)]
    assert not {id(w) for b in blocks for w in b.weights} & {id(w) for w in encoder.weights}
    # Defaults: ceil(L / 3) blocks, a quarter of the feed-forward width, same heads.
    deep = bert_encoder(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=4, num_attention_heads=4,
                                   intermediate_size=32, max_position_embeddings=32))
    default = electra_pretrainer(deep)
    assert (default.generator_num_layers, default.generator_intermediate_size, default.generator_num_heads) == (2, 8, 4)
    # A model containing the encoder works too; bad sizes fail early.
    assert electra_pretrainer(bert_classifier(tiny_config, num_classes=2)).discriminator.name == "bert_encoder"
    with pytest.raises(ValueError, match="divide"):
        electra_pretrainer(encoder, generator_num_heads=3)


def test_corruption_and_labels(tiny_config):
    model = electra_pretrainer(bert_encoder(tiny_config), seed=3)
    x, y = _batch()
    _force_sample(model, 11)  # the original token of row 0's first masked slot
    out = model(x, training=False)
    sampled, corrupted = out["sampled_ids"].numpy(), out["corrupted_ids"].numpy()
    np.testing.assert_array_equal(sampled, np.full((2, P), 11))
    expected = x["input_word_ids"].copy()
    expected[0, 2] = expected[0, 4] = 11  # only the real slots of row 0 write; position 0 keeps [CLS]
    np.testing.assert_array_equal(corrupted, expected)
    assert corrupted[0, 0] == corrupted[1, 0] == CLS
    labels = model.rtd_labels(x, y, out).numpy()
    expected_labels = np.zeros((2, SEQ), "float32")
    expected_labels[0, 4] = 1.0  # sampled 11 where the original was 30; 11 == original at position 2: label 0
    np.testing.assert_array_equal(labels, expected_labels)
    assert out["mlm_logits"].shape == (2, P, tiny_config.vocab_size) and out["rtd_logits"].shape == (2, SEQ)
    assert out["rtd_logits"].dtype == "float32"


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_compute_loss_matches_numpy(tiny_config):
    model = electra_pretrainer(bert_encoder(tiny_config), discriminator_weight=7.0, seed=5)
    model.compile(optimizer="adam")
    x, y = _batch()
    y_pred = model(x, training=False)
    loss = float(model.compute_loss(x, y, y_pred, training=False))

    logits, rtd = y_pred["mlm_logits"].numpy().astype("float64"), y_pred["rtd_logits"].numpy().astype("float64")
    corrupted = y_pred["corrupted_ids"].numpy()
    targets = y["mlm_logits"]
    real = targets != -100
    logp = _log_softmax(logits)
    gen = -np.mean([logp[b, j, targets[b, j]] for b, j in zip(*np.nonzero(real))])
    original = x["input_word_ids"].copy()
    for b, j in zip(*np.nonzero(real)):
        original[b, x["masked_lm_positions"][b, j]] = targets[b, j]
    tokens = x["input_mask"] > 0
    labels = ((corrupted != original) & tokens).astype("float64")
    bce = np.maximum(rtd, 0) - rtd * labels + np.log1p(np.exp(-np.abs(rtd)))
    disc = bce[tokens].mean()
    np.testing.assert_allclose(loss, gen + 7.0 * disc, rtol=1e-5)
    np.testing.assert_allclose(float(model.generator_loss_tracker.result()), gen, rtol=1e-5)
    np.testing.assert_allclose(float(model.discriminator_loss_tracker.result()), disc, rtol=1e-5)
    np.testing.assert_allclose(float(model.replaced_fraction_tracker.result()), labels[tokens].mean(), rtol=1e-6)
    accuracy = np.mean([logits[b, j].argmax() == targets[b, j] for b, j in zip(*np.nonzero(real))])
    np.testing.assert_allclose(float(model.generator_accuracy_tracker.result()), accuracy, rtol=1e-6)
    # evaluate reports the same metrics (the generator's do not depend on the sampling).
    logs = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
    assert {"loss", *METRIC_NAMES} <= set(logs)
    np.testing.assert_allclose(logs["generator_loss"], gen, rtol=1e-5)
    np.testing.assert_allclose(logs["generator_accuracy"], accuracy, rtol=1e-6)
    with pytest.raises(ValueError, match="without loss"):
        model.compile(optimizer="adam", loss="mse")


def _corpus(n=64, vocab=64, seed=0):
    """Packed sequences of consecutive ids (learnable by the generator)."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, SEQ), "int32")
    mask = np.zeros((n, SEQ), "int32")
    for i in range(n):
        length = int(rng.integers(6, SEQ - 1))
        start = int(rng.integers(0, 40))
        ids[i, 0] = CLS
        ids[i, 1:length + 1] = 5 + (start + np.arange(length)) % (vocab - 5)
        ids[i, length + 1] = SEP
        mask[i, :length + 2] = 1
    return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": np.zeros_like(ids)}


def _dataset(batch=8, vocab=64):
    """(features, labels) batches as the MLM pretraining pipeline yields them."""
    masker = MLMMasker(vocab, MASK, [0, CLS, SEP], masked_lm_prob=0.2, max_predictions_per_seq=P, seed=1)

    def to_electra(features):
        out = masker(features)
        inputs = {"input_word_ids": out["masked_input_word_ids"], "input_mask": out["input_mask"],
                  "input_type_ids": out["input_type_ids"], "masked_lm_positions": out["masked_lm_positions"]}
        return inputs, {"mlm_logits": out["masked_lm_ids"], "nsp_logits": tf.zeros([tf.shape(out["input_mask"])[0]],
                                                                                 tf.int32)}

    return tf.data.Dataset.from_tensor_slices(_corpus(vocab=vocab)).batch(batch, drop_remainder=True).map(to_electra)


def test_fit_under_jit_lowers_loss_and_logs_metrics(tiny_config):
    keras.utils.set_random_seed(0)
    model = electra_pretrainer(bert_encoder(tiny_config, seq_length=SEQ), seed=0)  # static shapes for XLA
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True)
    assert model.jit_compile
    table = model.shared_embeddings.word_embeddings.embeddings
    before = table.numpy().copy()
    ds = _dataset()
    history = model.fit(ds, epochs=4, verbose=0).history
    for key in ("loss",) + METRIC_NAMES:
        assert len(history[key]) == 4 and all(np.isfinite(history[key])), key
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    assert 0.0 < history["replaced_fraction"][-1] < 0.3
    assert not np.allclose(table.numpy(), before)
    # The trackers restart every epoch: after fit they hold the last epoch's real tokens only.
    real_tokens = sum(int(tf.reduce_sum(x["input_mask"])) for x, _ in ds)
    assert float(model.discriminator_accuracy_tracker.count) == real_tokens


def test_save_and_load_round_trip(tiny_config, tmp_path):
    model = electra_pretrainer(bert_encoder(tiny_config), generator_num_layers=1, generator_intermediate_size=8,
                               discriminator_weight=20.0, seed=7)
    model.compile(optimizer="adam")
    x, y = _batch()
    rng = np.random.default_rng(0)
    for w in model.weights:  # off their initial values, so a fresh model differs everywhere
        w.assign(rng.normal(0, 0.1, w.shape).astype("float32"))
    model.optimizer.build(model.trainable_variables)  # saved with its slots
    model(x)  # advance the sampling state past its initial value
    path = str(tmp_path / "electra.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, ElectraPretrainer) and loaded.compiled
    assert loaded.discriminator_weight == 20.0 and loaded.generator_intermediate_size == 8
    assert loaded.generator_head.tied_variable is loaded.shared_embeddings.word_embeddings.embeddings
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # The sampling state travels with the weights: identical samples, corruption and logits.
    np.testing.assert_array_equal(loaded.seed_generator.state.numpy(), model.seed_generator.state.numpy())
    out_a, out_b = model(x, training=False), loaded(x, training=False)
    for key in out_a:
        np.testing.assert_array_equal(out_a[key].numpy(), out_b[key].numpy())

    weights_path = str(tmp_path / "electra.weights.h5")
    model.save_weights(weights_path)
    fresh = electra_pretrainer(bert_encoder(tiny_config), generator_num_layers=1, generator_intermediate_size=8,
                               seed=99)
    fresh.load_weights(weights_path)
    for a, b in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    out_a, out_c = model(x, training=False), fresh(x, training=False)
    for key in out_a:
        np.testing.assert_array_equal(out_a[key].numpy(), out_c[key].numpy())
