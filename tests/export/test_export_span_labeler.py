import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.configs import BertConfig
from kzoo.export.span_labeler import context_wordpieces, export_span_labeler
from kzoo.models import bert_encoder, bert_span_labeler
from kzoo.text import BertTokenizer
from kzoo.text.squad import SquadExample, convert_examples_to_features, postprocess, split_context

SEQ, STRIDE, QUERY, ANSWER = 48, 16, 12, 8
FILLER = ("The river flows past old mills, quiet farms and the stone bridge of the village. "
          "Travellers (mostly merchants) stopped there; some stayed for years, others left at dawn. ")
PAIRS = [
    ("Where is the bridge?", "The stone bridge crosses the river near the mill, built in 1895 by Smith's sons."),
    ("Who opened the café?",
     "Le café de Zoë à Besançon ouvrit en 1895 (rue Émile-Zola), près de l'hôtel Ünïcödé."),
    ("What did the travellers do at dawn after staying for many long years in the village?",
     FILLER * 4 + "At dawn, the last merchant sold his mill to Jürgen, a baker from Köln. " + FILLER * 2),
    ("Why?", "Because!"),
]


@pytest.fixture(scope="module")
def tokenizer():
    from tests.conftest import minilm_vocab_file

    return BertTokenizer(vocab_file=minilm_vocab_file())


@pytest.fixture(scope="module")
def model(tokenizer):
    keras.utils.set_random_seed(3)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=SEQ)
    labeler = bert_span_labeler(bert_encoder(config), initializer_range=1.0)  # spread-out logits
    return labeler


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tokenizer, model):
    return export_span_labeler(model, tokenizer, tmp_path_factory.mktemp("qa") / "squad", max_seq_length=SEQ,
                               doc_stride=STRIDE, max_query_length=QUERY, max_answer_length=ANSWER)


def _serve(path, pairs):
    signature = tf.saved_model.load(path).signatures["serving_default"]
    out = signature(question=tf.constant([q for q, _ in pairs]), context=tf.constant([c for _, c in pairs]))
    return {k: [s.decode() for s in v.numpy()] if v.dtype == tf.string else v.numpy().tolist()
            for k, v in out.items()}


def _reference(model, tokenizer, pairs, v2=False, threshold=0.0):
    """kzoo's Python pipeline: official features, the Keras model, official postprocess."""
    examples = [SquadExample(qas_id=str(i), question_text=q, doc_tokens=split_context(c)[0])
                for i, (q, c) in enumerate(pairs)]
    features = convert_examples_to_features(examples, tokenizer, SEQ, STRIDE, QUERY, is_training=False)
    inputs = {n: np.stack([getattr(f, n) for f in features])
              for n in ("input_word_ids", "input_mask", "input_type_ids")}
    out = model(inputs, training=False)
    results = {f.unique_id: (s, e) for f, s, e in
               zip(features, out["start_logits"].numpy(), out["end_logits"].numpy())}
    predictions, nbest, odds = postprocess(examples, features, results, max_answer_length=ANSWER,
                                           version_2_with_negative=v2, null_score_diff_threshold=threshold)
    best = [next((c["start_logit"] + c["end_logit"] for c in nbest[e.qas_id] if c["text"]), -math.inf)
            if predictions[e.qas_id] != "empty" else -math.inf  # "empty": the official placeholder, no span
            for e in examples]
    windows = [sum(f.example_index == i for f in features) for i in range(len(examples))]
    return [predictions[e.qas_id] for e in examples], best, windows, odds


def test_context_wordpieces_ids_and_offsets(tokenizer):
    texts = ["Smith's café, Zoë (1895)!  Ünïcödé\u00a0naïve\tend.",
             "ΟΔΟΣ İstanbul 我爱北京 a\u200bb", ""]
    ids, starts, ends = context_wordpieces(tokenizer, tf.constant(texts))
    assert ids.to_list() == tokenizer(tf.constant(texts)).to_list()
    spans = [[t[a:b] for a, b in zip(s, e)] for t, s, e in zip(texts, starts.to_list(), ends.to_list())]
    assert spans[0] == ["Smith", "'", "s", "café", ",", "Zoë", "(", "1895", ")", "!",
                        "Ünïcödé", "naïve", "end", "."]
    assert spans[1][-5:] == ["我", "爱", "北", "京", "a\u200bb"] and spans[1][-6] == "İstanbul"
    assert "".join(spans[1][:-6]) == "ΟΔΟΣ" and spans[2] == []


def test_signature_matches_python_pipeline(exported, tokenizer, model):
    assert os.path.basename(exported) == "1"
    got = _serve(exported, PAIRS)
    want, best, windows, _ = _reference(model, tokenizer, PAIRS)
    assert windows[2] > 5 and windows[0] == 1  # the long context really is cut into many windows
    # No valid span among the n-best starts and ends: the official v1 code answers "empty", the signature ""
    # with no character span (documented in export_span_labeler).
    assert got["answer"] == ["" if w == "empty" else w for w in want]
    np.testing.assert_allclose(got["score"], best, atol=1e-4)
    for (_, context), answer, start, end in zip(PAIRS, got["answer"], got["start_char"], got["end_char"]):
        assert (start, end) == (-1, -1) if answer == "" else (context[start:end] == answer and 0 <= start < end)
    assert "null_score" not in got


class _PickModel(keras.Model):
    """Logits 10 on a given start / end token id, `cls_bias` on [CLS], 0 elsewhere."""

    def __init__(self, start_id, end_id, cls_id, cls_bias=0.0):
        super().__init__(name="pick")
        self.ids, self.cls_bias = (start_id, end_id, cls_id), cls_bias
        self.built = True  # no weights

    def call(self, inputs, training=False):
        ids = inputs["input_word_ids"]
        cls = self.cls_bias * keras.ops.cast(keras.ops.equal(ids, self.ids[2]), "float32")
        return {"start_logits": 10.0 * keras.ops.cast(keras.ops.equal(ids, self.ids[0]), "float32") + cls,
                "end_logits": 10.0 * keras.ops.cast(keras.ops.equal(ids, self.ids[1]), "float32") + cls}


KNOWN = ("Where is the tower?", FILLER * 3 + "The tower stands in PARIS, the capital of Fránce. " + FILLER)


def test_known_answer_v2_threshold_and_versions(tmp_path, tokenizer):
    picker = _PickModel(tokenizer.token_to_id("paris"), tokenizer.token_to_id("france"), tokenizer.cls_token_id, 15.0)
    root = tmp_path / "qa"
    kwargs = dict(max_seq_length=SEQ, doc_stride=STRIDE, max_query_length=QUERY, max_answer_length=ANSWER,
                  version_2_with_negative=True)
    first = export_span_labeler(picker, tokenizer, root, **kwargs)
    second = export_span_labeler(picker, tokenizer, root, null_score_diff_threshold=12.0, **kwargs)
    assert [os.path.basename(first), os.path.basename(second)] == ["1", "2"] and sorted(os.listdir(root)) == ["1", "2"]
    with pytest.raises(ValueError, match="already exists"):
        export_span_labeler(picker, tokenizer, root, version=2, **kwargs)
    pairs = [KNOWN, ("Anything?", "")]
    start = KNOWN[1].index("PARIS")
    end = KNOWN[1].index("Fránce") + len("Fránce")
    # null 30 - best 20 = 10 > 0: no answer
    null_wins = _serve(first, pairs)
    assert null_wins["answer"] == ["", ""] and null_wins["start_char"] == [-1, -1] == null_wins["end_char"]
    np.testing.assert_allclose(null_wins["null_score"][0], 30.0)
    np.testing.assert_allclose(null_wins["score"][0], 20.0)
    assert null_wins["score"][1] == -math.inf  # empty context: no span at all
    want, best, windows, odds = _reference(picker, tokenizer, pairs, v2=True)
    assert want[0] == "" and windows[0] > 3 and odds["0"] == pytest.approx(10.0)
    # 10 <= 12: the span wins, exactly the context's characters
    span_wins = _serve(second, pairs)
    assert span_wins["answer"] == [KNOWN[1][start:end], ""] == ["PARIS, the capital of Fránce", ""]
    assert span_wins["start_char"] == [start, -1] and span_wins["end_char"] == [end, -1]
    want, _, _, _ = _reference(picker, tokenizer, pairs, v2=True, threshold=12.0)
    assert want[0] == span_wins["answer"][0]


def test_fresh_process_loads_without_kzoo(exported):
    want = _serve(exported, PAIRS)
    script = (
        "import json, sys, tensorflow as tf, tensorflow_text\n"
        "pairs = json.loads(sys.argv[2])\n"
        "f = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "out = f(question=tf.constant([q for q, _ in pairs]), context=tf.constant([c for _, c in pairs]))\n"
        "print(json.dumps({k: [s.decode() for s in v.numpy()] if v.dtype == tf.string else v.numpy().tolist()"
        " for k, v in out.items()}))\n"
        "assert 'kzoo' not in sys.modules, 'the SavedModel pulled in kzoo'\n"
    )
    run = subprocess.run([sys.executable, "-c", script, exported, json.dumps(PAIRS)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": ""}, cwd=os.path.dirname(exported))
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["answer"] == want["answer"]
    assert got["start_char"] == want["start_char"] and got["end_char"] == want["end_char"]
    np.testing.assert_allclose(got["score"], want["score"], atol=1e-5)
