import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kzoo.configs import BertConfig
from kzoo.export import export_classifier, next_version, write_version
from kzoo.models import bert_classifier
from kzoo.text import BertPacker, BertTokenizer

SENTENCES = ["What's the weather in Paris tomorrow?", "play some jazz", "Café Ünïcödé 我爱北京", ""]


@pytest.fixture(scope="module")
def tokenizer():
    from tests.conftest import minilm_vocab_file

    return BertTokenizer(vocab_file=minilm_vocab_file())


@pytest.fixture(scope="module")
def model(tokenizer):
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64)
    return bert_classifier(config, num_classes=3)


def test_serving_signature_matches_keras_model_in_fresh_process(tmp_path, tokenizer, model):
    path = export_classifier(model, tokenizer, ["alarm", "music", "weather"], tmp_path / "intents", seq_length=32)
    assert path == str(tmp_path / "intents" / "1")
    packer = BertPacker.from_tokenizer(tokenizer, 32, dynamic_length=True)
    want = tf.nn.softmax(model(packer(tokenizer(tf.constant(SENTENCES))), training=False)).numpy()

    script = (
        "import json, sys, tensorflow as tf, tensorflow_text\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "out = m.signatures['serving_default'](text=tf.constant(json.loads(sys.argv[2])))\n"
        "print(json.dumps({k: v.numpy().tolist() if v.dtype != tf.string else [s.decode() for s in v.numpy()]"
        " for k, v in out.items()}))\n"
        "assert 'kzoo' not in sys.modules, 'the SavedModel pulled in kzoo'\n"
    )
    run = subprocess.run([sys.executable, "-c", script, path, json.dumps(SENTENCES)], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""}, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(np.array(got["probabilities"]), want, atol=1e-5)
    assert got["label_ids"] == want.argmax(-1).tolist()
    assert got["labels"] == [["alarm", "music", "weather"][i] for i in want.argmax(-1)]


def test_packed_signature_and_versions(tmp_path, tokenizer, model):
    root = tmp_path / "m"
    first = export_classifier(model, tokenizer, ["a", "b", "c"], root, seq_length=16)
    second = export_classifier(model, tokenizer, ["a", "b", "c"], root, seq_length=16)
    assert [os.path.basename(first), os.path.basename(second)] == ["1", "2"]
    assert sorted(os.listdir(root)) == ["1", "2"]  # no temporary folder left behind
    loaded = tf.saved_model.load(second)
    packer = BertPacker.from_tokenizer(tokenizer, 16)
    packed = packer(tokenizer(tf.constant(SENTENCES)))
    out = loaded.signatures["serve_packed"](**packed)
    want = tf.nn.softmax(model(packed, training=False)).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), want, atol=1e-5)
    # every weight is stored once (Keras' own archive writes each twice: keras-team/keras#23553); besides the
    # model's weights the SavedModel holds only the tokenizer's and packer's few constants
    stored = sum(int(np.prod(shape)) for _, shape in tf.train.list_variables(
        os.path.join(second, "variables", "variables")))
    assert model.count_params() <= stored < model.count_params() + 100
    with pytest.raises(ValueError, match="already exists"):
        export_classifier(model, tokenizer, ["a", "b", "c"], root, version=2)
    with pytest.raises(ValueError, match="3 outputs"):
        export_classifier(model, tokenizer, ["a", "b"], root)


def test_failed_write_leaves_nothing(tmp_path):
    def broken(path):
        os.makedirs(path)
        open(os.path.join(path, "half.pb"), "w").close()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_version(tmp_path, broken)
    assert os.listdir(tmp_path) == [] and next_version(tmp_path) == 1


def test_pair_signature_takes_text_and_text_b(tmp_path, tokenizer, model):
    path = export_classifier(model, tokenizer, ["x", "y", "z"], tmp_path / "pairs", seq_length=24, pair=True)
    signature = tf.saved_model.load(path).signatures["serving_default"]
    assert sorted(signature.structured_input_signature[1]) == ["text", "text_b"]
    a, b = ["The company said profits rose .", "He left early ."], ["Profits rose , it said .", "It was cold ."]
    out = signature(text=tf.constant(a), text_b=tf.constant(b))
    packer = BertPacker.from_tokenizer(tokenizer, 24, dynamic_length=True)
    packed = packer([tokenizer(tf.constant(a)), tokenizer(tf.constant(b))])
    assert packed["input_type_ids"].numpy().max() == 1  # the second segment really is there
    want = tf.nn.softmax(model(packed, training=False)).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), want, atol=1e-5)


def test_xla_lengths_export_gives_the_plain_outputs(tmp_path, tokenizer, model):
    labels = ["alarm", "music", "weather"]
    plain = tf.saved_model.load(export_classifier(model, tokenizer, labels, tmp_path / "plain", seq_length=32))
    path = export_classifier(model, tokenizer, labels, tmp_path / "xla", seq_length=32, xla_lengths=(8, 32))
    xla = tf.saved_model.load(path)
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((tmp_path / "xla" / "1" / "saved_model.pb").read_bytes())
    compiled = [f for f in saved.meta_graphs[0].graph_def.library.function if f.attr["_XlaMustCompile"].b]
    assert len(compiled) == 1  # the model runs as one XLA program
    for batch in (SENTENCES, SENTENCES[:1], SENTENCES[1:] + ["word " * 40], []):  # lengths 8 and 32, batches 1-5, 0
        want = plain.signatures["serving_default"](text=tf.constant(batch, tf.string))
        got = xla.signatures["serving_default"](text=tf.constant(batch, tf.string))
        assert got["probabilities"].shape == want["probabilities"].shape
        np.testing.assert_allclose(got["probabilities"].numpy(), want["probabilities"].numpy(), atol=1e-5)
        assert got["labels"].numpy().tolist() == want["labels"].numpy().tolist()
    for bad, message in (((32, 8), "increasing"), ((8, 16), "at least seq_length")):
        with pytest.raises(ValueError, match=message):
            export_classifier(model, tokenizer, labels, tmp_path / "bad", seq_length=32, xla_lengths=bad)
