"""`run_squad` and the span-labeler export for a SentencePiece family (ALBERT) and byte-level BPE (RoBERTa),
from the tiny random models of `tests/family_models.py` on a handful of ../shared SQuAD questions: predictions
are exact substrings of their contexts, and the exported SavedModel, loaded in a fresh process that imports only
tensorflow and tensorflow_text, answers with `context[start_char:end_char]` and the in-process offsets."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import shared_path
from tests.family_models import tiny_family_folders

pytestmark = pytest.mark.slow  # three run_squad runs: -m slow

FAMILIES = ("albert", "roberta", "deberta_v2")  # two SentencePiece families and byte-level BPE
FRESH = (
    "import json, sys, tensorflow as tf, tensorflow_text\n"
    "job = json.loads(open(sys.argv[1], encoding='utf-8').read())\n"
    "out = {}\n"
    "for family, (path, questions, contexts) in job.items():\n"
    "    f = tf.saved_model.load(path).signatures['serving_default']\n"
    "    r = f(question=tf.constant(questions), context=tf.constant(contexts))\n"
    "    out[family] = {k: [s.decode() for s in v.numpy()] if v.dtype == tf.string else v.numpy().tolist()\n"
    "                   for k, v in r.items()}\n"
    "assert 'kzoo' not in sys.modules, 'the SavedModel pulled in kzoo'\n"
    "print(json.dumps(out))\n"
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from kzoo.tasks.squad import SquadRun, run_squad

    train_file = shared_path("data", "squad_v1.1", "dev-v1.1-even-articles.json")
    folders = tiny_family_folders(tmp_path_factory)
    root = tmp_path_factory.mktemp("squad_families")
    results = {}
    for family in FAMILIES:
        run = SquadRun(train_file=train_file, holdout_articles=1, max_train_examples=16, max_eval_examples=8,
                       init_checkpoint=str(folders[family]), max_seq_length=96, doc_stride=32, max_query_length=24,
                       n_best_size=5, max_answer_length=16, num_train_epochs=1, train_batch_size=8,
                       predict_batch_size=32, model_dir=str(root / family), export_dir=str(root / f"{family}_export"),
                       verbose=0)
        results[family] = (run, run_squad(run))
    return train_file, results


def _eval_pairs(train_file, n=8):
    with open(train_file, encoding="utf-8") as f:
        article = json.load(f)["data"][-1]
    return [(qa["id"], qa["question"], p["context"]) for p in article["paragraphs"] for qa in p["qas"]][:n]


def test_predictions_are_exact_context_substrings(runs):
    from kzoo.text import AlbertTokenizer, DebertaV2Tokenizer, RobertaTokenizer
    from kzoo.training.common import load_tokenizer

    train_file, results = runs
    pairs = _eval_pairs(train_file)
    for family, (run, result) in results.items():
        assert result["num_train"] == 16 and result["num_eval"] == 8 and result["metrics"]["total"] == 8
        predictions = json.loads(open(result["predictions_file"], encoding="utf-8").read())
        nbest = json.loads(open(result["nbest_file"], encoding="utf-8").read())
        assert sorted(predictions) == sorted(qid for qid, _, _ in pairs)
        for qid, _, context in pairs:
            texts = [c["text"] for c in nbest[qid]]
            assert texts[0] == predictions[qid] and predictions[qid] in context, (family, predictions[qid])
            assert all(t in context for t in texts), (family, texts)
        tokenizer = load_tokenizer(run.model_dir)  # the family's tokenizer is saved beside the model
        assert type(tokenizer) is {"albert": AlbertTokenizer, "roberta": RobertaTokenizer,
                                   "deberta_v2": DebertaV2Tokenizer}[family]


def test_export_in_a_fresh_process(runs, tmp_path):
    train_file, results = runs
    pairs = _eval_pairs(train_file)
    # a context with a multi-byte character, extra whitespace and a question that fits no window well
    pairs.append(("hand", "Who baked the bread?", "In  Köln,\tthe baker Jürgen baked bread 😀 daily."))
    questions, contexts = [q for _, q, _ in pairs], [c for _, _, c in pairs]
    job, inside = {}, {}
    for family, (_, result) in results.items():
        path = result["export_path"]
        assert path and os.path.basename(path) == "1"
        serve = tf.saved_model.load(path).signatures["serving_default"]
        out = serve(question=tf.constant(questions), context=tf.constant(contexts))
        inside[family] = {k: [s.decode() for s in v.numpy()] if v.dtype == tf.string else v.numpy().tolist()
                          for k, v in out.items()}
        job[family] = (path, questions, contexts)
        predictions = json.loads(open(result["predictions_file"], encoding="utf-8").read())
        # the Python pipeline and the graph pick the same span (same rules, same model) on most questions
        agree = sum(predictions[qid] == a for (qid, _, _), a in zip(pairs[:-1], inside[family]["answer"]))
        assert agree >= len(pairs) - 4, (family, agree)
    (tmp_path / "job.json").write_text(json.dumps(job), encoding="utf-8")
    run = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "job.json")], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": ""}, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    fresh = json.loads(run.stdout.strip().splitlines()[-1])
    for family in FAMILIES:
        got, want = fresh[family], inside[family]
        assert got["answer"] == want["answer"], family
        assert got["start_char"] == want["start_char"] and got["end_char"] == want["end_char"], family
        np.testing.assert_allclose(got["score"], want["score"], atol=1e-4)
        for context, answer, start, end in zip(contexts, got["answer"], got["start_char"], got["end_char"]):
            assert answer == context[start:end] and 0 <= start < end <= len(context), (family, answer)
