import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.configs import BertConfig
from kzoo.export.hub import export_hub_encoder
from kzoo.models import bert_encoder
from kzoo.models.pretrainer import bert_pretrainer
from kzoo.text import BertPacker, BertTokenizer

SEQ_LENGTH = 24
SENTENCES = ["Hello, world!", "Café Ünïcödé 我爱北京", "", "the quick brown fox jumps over the lazy dog " * 4]
PAIRS = (["What is BERT?", "short", "a b c d e f g h i j k l m n o p q r s t"],
         ["A language model.", "", "one two three four five six seven eight nine ten eleven twelve"])


@pytest.fixture(scope="module")
def tokenizer():
    from tests.conftest import minilm_vocab_file

    return BertTokenizer(vocab_file=minilm_vocab_file())


@pytest.fixture(scope="module")
def models(tokenizer):
    keras.utils.set_random_seed(3)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64)
    encoder = bert_encoder(config)
    return encoder, bert_pretrainer(encoder)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tokenizer, models):
    encoder, pretrainer = models
    return export_hub_encoder(encoder, tokenizer, tmp_path_factory.mktemp("hub") / "bert", seq_length=SEQ_LENGTH,
                              pretrainer=pretrainer)


def _equal(got, want):
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == tf.int32, name
        np.testing.assert_array_equal(got[name].numpy(), want[name].numpy(), err_msg=name)


def test_layout_and_preprocess_matches_kzoo(exported, tokenizer):
    root = os.path.dirname(os.path.dirname(exported.preprocess))
    assert exported.preprocess == os.path.join(root, "preprocess", "1")
    assert exported.encoder == os.path.join(root, "encoder", "1")
    for path in exported:
        with open(os.path.join(path, "assets", "vocab.txt"), encoding="utf-8") as f:
            assert f.read().splitlines() == list(tokenizer.vocabulary)
    preprocess = tf.saved_model.load(exported.preprocess)
    texts = tf.constant(SENTENCES)
    # root call: one segment at the default length, as BertPacker(SEQ_LENGTH)
    _equal(preprocess(texts), BertPacker.from_tokenizer(tokenizer, SEQ_LENGTH)(tokenizer(texts)))
    _equal(preprocess.signatures["serving_default"](text=texts),
           BertPacker.from_tokenizer(tokenizer, SEQ_LENGTH)(tokenizer(texts)))
    # tokenize: [batch, (words), (pieces)]; merged, it is BertTokenizer's output
    tokens = preprocess.tokenize(texts)
    assert tokens.ragged_rank == 2
    assert tokens.merge_dims(-2, -1).to_list() == tokenizer(texts).to_list()
    assert tokens.row_lengths().numpy().tolist() == tokenizer.basic_tokenize(texts).row_lengths().numpy().tolist()
    special = {k: int(v) for k, v in preprocess.tokenize.get_special_tokens_dict().items()}
    assert special == {"vocab_size": 30522, "start_of_sequence_id": tokenizer.cls_token_id,
                       "end_of_segment_id": tokenizer.sep_token_id, "padding_id": tokenizer.pad_token_id,
                       "mask_id": tokenizer.mask_token_id}
    # bert_pack_inputs: 1 or 2 segments, ragged rank 1 or 2, default or given length
    a, b = tf.constant(PAIRS[0]), tf.constant(PAIRS[1])
    for length in (64, 12):
        packer = BertPacker.from_tokenizer(tokenizer, length)
        _equal(preprocess.bert_pack_inputs([preprocess.tokenize(a), preprocess.tokenize(b)], seq_length=length),
               packer([tokenizer(a), tokenizer(b)]))
        _equal(preprocess.bert_pack_inputs([tokenizer(a)], seq_length=tf.constant(length)), packer(tokenizer(a)))
    packed = preprocess.bert_pack_inputs([tokenizer(a), tokenizer(b)])
    _equal(packed, BertPacker.from_tokenizer(tokenizer, SEQ_LENGTH)([tokenizer(a), tokenizer(b)]))
    assert packed["input_type_ids"].numpy().max() == 1


def test_assets_rebuild_the_tokenizer(exported, tokenizer):
    """assets/ holds vocab.txt and kzoo's kzoo_tokenizer.json record, from which the tokenizer is rebuilt."""
    from kzoo.text.saving import read_tokenizer

    for path in exported:
        assets = os.path.join(path, "assets")
        assert sorted(os.listdir(assets)) == ["kzoo_tokenizer.json", "vocab.txt"]
        rebuilt = read_tokenizer(assets)
        assert type(rebuilt) is BertTokenizer
        assert rebuilt.vocabulary == tokenizer.vocabulary and rebuilt.lower_case == tokenizer.lower_case


def test_encoder_matches_kzoo(exported, tokenizer, models):
    encoder, pretrainer = models
    loaded = tf.saved_model.load(exported.encoder)
    assert len(loaded.trainable_variables) == len(encoder.trainable_variables) > 0
    inputs = BertPacker.from_tokenizer(tokenizer, SEQ_LENGTH)([tokenizer(tf.constant(PAIRS[0])),
                                                              tokenizer(tf.constant(PAIRS[1]))])
    want = encoder(inputs, training=False)
    got = loaded(inputs, training=False)
    assert sorted(got) == ["default", "encoder_outputs", "pooled_output", "sequence_output"]
    for name in ("pooled_output", "sequence_output"):
        np.testing.assert_allclose(got[name].numpy(), want[name].numpy(), atol=1e-5)
    assert len(got["encoder_outputs"]) == 2
    for g, w in zip(got["encoder_outputs"], want["encoder_outputs"]):
        np.testing.assert_allclose(g.numpy(), w.numpy(), atol=1e-5)
    np.testing.assert_allclose(loaded.serve(inputs)["pooled_output"].numpy(), want["pooled_output"].numpy(),
                               atol=1e-5)
    serving = loaded.signatures["serving_default"](**inputs)
    np.testing.assert_allclose(serving["sequence_output"].numpy(), want["sequence_output"].numpy(), atol=1e-5)
    # training=True runs dropout
    train_out = loaded(inputs, training=True)["sequence_output"].numpy()
    assert np.abs(train_out - want["sequence_output"].numpy()).max() > 1e-3
    # the mlm sub-object: the pretrainer's masked-LM head
    positions = tf.constant([[1, 2, 3], [1, 1, 1], [4, 5, 6]])
    mlm = loaded.mlm({**inputs, "masked_lm_positions": positions})
    want_mlm = pretrainer({**inputs, "masked_lm_positions": positions}, training=False)["mlm_logits"]
    assert mlm["mlm_logits"].shape == (3, 3, tokenizer.vocab_size)
    np.testing.assert_allclose(mlm["mlm_logits"].numpy(), want_mlm.numpy(), atol=1e-4)
    np.testing.assert_allclose(mlm["pooled_output"].numpy(), want["pooled_output"].numpy(), atol=1e-5)


FINE_TUNE = r"""
import json, sys
import numpy as np, tensorflow as tf, tensorflow_text, keras

preprocess_path, encoder_path = sys.argv[1:3]
keras.utils.set_random_seed(0)
preprocess = tf.saved_model.load(preprocess_path)
words = ["great", "lovely", "awful", "terrible"]
texts = [f"the movie was {w} {x}" for w in words for x in ("today", "indeed", "really", "again")]
labels = np.array([int(t.split()[3] in ("awful", "terrible")) for t in texts])
features = {k: v.numpy() for k, v in preprocess(tf.constant(texts)).items()}



class Encoder(keras.layers.TFSMLayer):
    # Keras 3.15's TFSMLayer names its weights after the restored tf.Variable names, which
    # end in ":0"; optimizers with slots (Adam) then fail on the ":" in their scope names.
    def _add_existing_weight(self, weight):
        variable = keras.Variable(initializer=weight, trainable=weight.trainable, dtype=weight.dtype,
                                  shape=weight.shape, name=weight.name.split(":")[0].replace("/", "_"))
        self._track_variable(variable)


encoder = Encoder(encoder_path, call_endpoint="serve", call_training_endpoint="serve_training",
                                 trainable=True)
names = ("input_word_ids", "input_mask", "input_type_ids")
inputs = {k: keras.Input((None,), dtype="int32", name=k) for k in names}
outputs = keras.layers.Dense(2)(encoder(inputs)["pooled_output"])
model = keras.Model(inputs, outputs)
model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
before = [w.numpy().copy() for w in encoder.trainable_weights]
history = model.fit(features, labels, batch_size=16, epochs=20, shuffle=False, verbose=0)
moved = sum(not np.array_equal(b, w.numpy()) for b, w in zip(before, encoder.trainable_weights))
print(json.dumps({"loss": history.history["loss"], "moved": moved, "weights": len(before),
                  "kzoo": "kzoo" in sys.modules}))
"""


def test_fine_tune_in_fresh_process_without_kzoo(exported, tmp_path):
    run = subprocess.run([sys.executable, "-c", FINE_TUNE, exported.preprocess, exported.encoder],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""},
                         cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert not got["kzoo"]
    assert got["weights"] > 0 and got["moved"] == got["weights"], got
    loss = got["loss"]
    assert np.mean(loss[-3:]) < 0.5 * loss[0], loss


def test_versions_and_checks(tmp_path, tokenizer, models):
    encoder, _ = models
    first = export_hub_encoder(encoder, tokenizer, tmp_path / "m", seq_length=8, version=3)
    assert [os.path.basename(p) for p in first] == ["3", "3"]
    with pytest.raises(ValueError, match="already exists"):
        export_hub_encoder(encoder, tokenizer, tmp_path / "m", seq_length=8, version=3)
    assert sorted(os.listdir(tmp_path / "m" / "preprocess")) == ["3"]  # nothing half-written
    other = bert_encoder(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32))
    with pytest.raises(ValueError, match="another encoder"):
        export_hub_encoder(encoder, tokenizer, tmp_path / "x", pretrainer=bert_pretrainer(other))
