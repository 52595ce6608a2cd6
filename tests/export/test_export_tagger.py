import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.configs import BertConfig
from kzoo.data.conll import tagging_dataset, word_predictions
from kzoo.export.tagger import export_tagger
from kzoo.models import bert_encoder
from kzoo.models.task_models import bert_token_classifier
from kzoo.text import BertTokenizer

TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
SEQ_LENGTH = 16
SENTENCES = [
    "John Smith lives in New York, doesn't he?",
    "",
    "Café Ünïcödé 我爱北京 unaffordable!!",
    # far more than SEQ_LENGTH - 2 wordpieces: trailing words are cut
    "the quick brown fox jumps over the lazy dog and then the antidisestablishmentarianism returns home again",
    "   ",
]


@pytest.fixture(scope="module")
def tokenizer():
    from tests.conftest import minilm_vocab_file

    return BertTokenizer(vocab_file=minilm_vocab_file())


@pytest.fixture(scope="module")
def model(tokenizer):
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64)
    keras.utils.set_random_seed(7)
    return bert_token_classifier(bert_encoder(config), num_tags=len(TAGS), initializer_range=0.5)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tokenizer, model):
    return export_tagger(model, tokenizer, TAGS, tmp_path_factory.mktemp("tagger") / "ner", seq_length=SEQ_LENGTH)


def _expected(tokenizer, model):
    """Independent per-word computation: kzoo's conll pipeline on the basic-tokenized words."""
    words = [[w.decode() for w in row] for row in tokenizer.basic_tokenize(tf.constant(SENTENCES)).to_list()]
    nonempty = [i for i, row in enumerate(words) if row]
    data = tagging_dataset([words[i] for i in nonempty], None, tokenizer, SEQ_LENGTH, TAGS, batch_size=2)
    logits = [model(batch, training=False).numpy() for batch in data.dataset]
    ids = word_predictions(logits, data.first_piece_positions)
    probabilities = [tf.nn.softmax(b).numpy() for b in logits]
    rows = [row for b in probabilities for row in b]
    word_probs = [np.where((p >= 0)[:, None], row[np.maximum(p, 0)], 0.0)
                  for row, p in zip(rows, data.first_piece_positions)]
    by_sentence = {i: (ids[k], word_probs[k], data.first_piece_positions[k]) for k, i in enumerate(nonempty)}
    return words, by_sentence, data


def _check(got, tokenizer, model):
    words, by_sentence, data = _expected(tokenizer, model)
    assert data.truncated_sentences == 1 and data.dropped_words > 0  # the long sentence really is cut
    max_words = max(len(row) for row in words)
    assert np.array(got["tokens"]).shape == (len(SENTENCES), max_words)
    assert list(got["num_words"]) == [len(row) for row in words]
    assert got["num_words"][1] == 0 and got["num_words"][4] == 0
    for i, row in enumerate(words):
        n = len(row)
        assert list(got["tokens"][i]) == row + [""] * (max_words - n)
        if not n:
            assert list(got["tag_ids"][i]) == [-1] * max_words and list(got["tags"][i]) == [""] * max_words
            continue
        ids, probs, positions = by_sentence[i]
        assert list(got["tag_ids"][i]) == ids.tolist() + [-1] * (max_words - n)
        assert list(got["tags"][i]) == [TAGS[t] for t in ids] + [""] * (max_words - n)
        assert got["num_tagged_words"][i] == int(np.sum(positions >= 0))
        np.testing.assert_allclose(np.array(got["probabilities"][i])[:n], probs, atol=1e-5)
        np.testing.assert_array_equal(np.array(got["probabilities"][i])[n:], 0.0)


def test_tagger_matches_conll_pipeline_in_process(exported, tokenizer, model):
    assert exported.endswith(os.path.join("ner", "1"))
    signature = tf.saved_model.load(exported).signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["text"]
    out = signature(text=tf.constant(SENTENCES))
    assert out["tags"].dtype == tf.string and out["tokens"].dtype == tf.string
    assert out["tag_ids"].dtype == tf.int32 and out["num_words"].dtype == tf.int32
    got = {k: [[s.decode() for s in row] for row in v.numpy()] if v.dtype == tf.string else v.numpy()
           for k, v in out.items()}
    _check(got, tokenizer, model)
    # a batch of one empty sentence: no words at all
    empty = signature(text=tf.constant([""]))
    assert empty["num_words"].numpy().tolist() == [0] and empty["tags"].shape == (1, 0)
    # the predictions are not all the same tag (else the comparison proves little)
    assert len({t for row in got["tag_ids"] for t in row if t >= 0}) > 1


def test_tagger_fresh_process(exported, tokenizer, model, tmp_path):
    script = (
        "import json, sys, tensorflow as tf, tensorflow_text\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "out = m.signatures['serving_default'](text=tf.constant(json.loads(sys.argv[2])))\n"
        "print(json.dumps({k: v.numpy().tolist() if v.dtype != tf.string else"
        " [[s.decode() for s in row] for row in v.numpy()] for k, v in out.items()}))\n"
        "assert 'kzoo' not in sys.modules, 'the SavedModel pulled in kzoo'\n"
    )
    run = subprocess.run([sys.executable, "-c", script, exported, json.dumps(SENTENCES)], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""}, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    _check(got, tokenizer, model)


def test_tagger_validates_tag_names(tmp_path, tokenizer, model):
    with pytest.raises(ValueError, match="5 outputs"):
        export_tagger(model, tokenizer, TAGS[:3], tmp_path)
    with pytest.raises(ValueError, match="fill_tag"):
        export_tagger(model, tokenizer, [t.lower() for t in TAGS], tmp_path)
    assert not os.listdir(tmp_path)
