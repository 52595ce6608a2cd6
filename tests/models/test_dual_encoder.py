"""The dual encoder's in-batch-negatives loss against numpy, and two MirroredStrategy replicas against one
device on the same global batch (the negatives are the whole global batch)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from kzoo.models import multiple_negatives_ranking_loss
from tests.conftest import REPO


def _numpy_loss(a, p, n=None, scale=20.0, symmetric=False):
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    a, p = unit(a.astype(np.float64)), unit(p.astype(np.float64))
    candidates = p if n is None else np.concatenate([p, unit(n.astype(np.float64))])

    def ce(queries, keys):
        logits = scale * queries @ keys.T
        logits -= logits.max(1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        return -np.mean(log_probs[np.arange(len(queries)), np.arange(len(queries))])

    loss = ce(a, candidates)
    return (loss + ce(p, a)) / 2 if symmetric else loss


@pytest.mark.parametrize("negatives, symmetric", [(False, False), (True, False), (False, True), (True, True)])
def test_loss_is_the_in_batch_softmax(negatives, symmetric):
    rng = np.random.default_rng(0)
    a, p, n = (rng.normal(size=(6, 8)).astype(np.float32) for _ in range(3))
    got = multiple_negatives_ranking_loss(tf.constant(a), tf.constant(p), tf.constant(n) if negatives else None,
                                          scale=7.0, symmetric=symmetric)
    np.testing.assert_allclose(float(got), _numpy_loss(a, p, n if negatives else None, 7.0, symmetric), rtol=1e-5)


MIRRORED = textwrap.dedent("""
    import json, os, sys
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import tensorflow as tf
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    sys.path.insert(0, sys.argv[1])
    from kzoo.configs import BertConfig
    from kzoo.models import DualEncoder, bert_encoder, multiple_negatives_ranking_loss, sentence_encoder
    from tests.conftest import random_inputs

    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    batch = {side: random_inputs(8, 10, 64, seed=s, lengths=[10, 3, 7, 5, 10, 2, 9, 6])
             for s, side in enumerate(("anchor", "positive", "negative"))}
    keras.utils.set_random_seed(0)
    initial = sentence_encoder(bert_encoder(config), pooling="mean").get_weights()
    result = {}

    def step(strategy, symmetric):
        with strategy.scope():
            encoder = sentence_encoder(bert_encoder(config), pooling="mean")
            encoder.set_weights(initial)
            model = DualEncoder(encoder, scale=20.0, symmetric=symmetric)
            model.compile(optimizer=keras.optimizers.SGD(1.0))  # one step: new weights = old - gradient
        ds = tf.data.Dataset.from_tensor_slices(batch).batch(8)  # one global batch; two replicas get 4 each
        history = model.fit(ds, epochs=1, verbose=0)
        return [np.asarray(w) for w in encoder.get_weights()], float(history.history["loss"][0])

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    for symmetric in (False, True):
        one, one_loss = step(tf.distribute.get_strategy(), symmetric)
        two, two_loss = step(mirrored, symmetric)
        # what each replica alone would see (its 4 pairs, its own negatives): a different loss
        encoder = sentence_encoder(bert_encoder(config), pooling="mean")
        encoder.set_weights(initial)
        out = {k: encoder(v) for k, v in batch.items()}
        halves = [float(multiple_negatives_ranking_loss(out["anchor"][s], out["positive"][s], out["negative"][s],
                                                        symmetric=symmetric)) for s in (slice(0, 4), slice(4, 8))]
        result[str(symmetric)] = {
            "loss": [one_loss, two_loss], "local_loss": float(np.mean(halves)),
            "moved": max(float(np.abs(a - b).max()) for a, b in zip(one, initial)),
            "diff": max(float(np.abs(a - b).max()) for a, b in zip(one, two))}
    print("RESULT " + json.dumps(result))
""")


def test_two_replicas_match_one_device_on_the_global_batch(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, str(script), REPO], capture_output=True, text=True, timeout=300,
                          env=env, cwd=REPO)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    for symmetric, r in result.items():
        one_loss, two_loss = r["loss"]
        assert two_loss == pytest.approx(one_loss, rel=1e-5), (symmetric, r)
        assert abs(r["local_loss"] - one_loss) > 1e-3, (symmetric, r)  # gathering changes the loss
        assert r["moved"] > 1e-3, (symmetric, r)  # the step really moved the weights
        assert r["diff"] < 1e-5, (symmetric, r)  # same gradients: same weights after the step
