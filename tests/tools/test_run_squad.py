"""tools/run_squad.py end to end, as a user runs it, from tiny BERTs in Hugging Face folders with the
real vocabulary (conftest's `tiny_bert_folder`): nothing checked here depends on pretrained weights."""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, shared_path

SCRIPT = os.path.join(REPO, "tools", "run_squad.py")
EVALUATION = re.compile(r"^evaluation: exact_match ([\d.]+), f1 ([\d.]+) \((\d+) questions, (\d+) s training\)$")
SMALL = ["--max_seq_length=128", "--doc_stride=64", "--max_query_length=32", "--num_train_epochs=1",
         "--train_batch_size=16", "--verbose=2"]


def _run(args, cwd, timeout=600):
    return subprocess.run([sys.executable, SCRIPT] + args, capture_output=True, text=True, timeout=timeout,
                          cwd=str(cwd))


def _evaluation(stdout):
    lines = [m for m in map(EVALUATION.match, stdout.splitlines()) if m]
    assert len(lines) == 1, stdout[-2000:]
    exact, f1, total, _ = lines[0].groups()
    return float(exact), float(f1), int(total)


def test_squad_v1_holdout(tmp_path, tiny_bert_folder):
    train_file = shared_path("data", "squad_v1.1", "dev-v1.1-even-articles.json")
    model_dir = tmp_path / "run"
    run = _run(SMALL + [f"--train_file={train_file}", f"--init_checkpoint={tiny_bert_folder(2, hf=True)}",
                        "--max_train_examples=48", "--holdout_articles=1", "--max_eval_examples=24", "--n_best_size=5",
                        f"--model_dir={model_dir}", "--layerwise_lr_decay=0.9", "--lr_schedule=cosine"], tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "trainable parameters: " in run.stderr
    assert "layer-wise learning rates: embeddings x0.81, layer_0 x0.9, layer_1 x1, head x1" in run.stderr
    assert os.listdir(model_dir / "logs" / "learning_rates")  # per-group rates in TensorBoard
    exact, f1, total = _evaluation(run.stdout)
    assert 0 <= exact <= 100 and 0 <= f1 <= 100 and exact <= f1 and total == 24
    assert f"predictions: {model_dir / 'predictions.json'}" in run.stdout.splitlines()

    with open(train_file, encoding="utf-8") as f:
        last_article = json.load(f)["data"][-1]
    expected_ids = [qa["id"] for p in last_article["paragraphs"] for qa in p["qas"]][:24]
    predictions = json.loads((model_dir / "predictions.json").read_text())
    assert sorted(predictions) == sorted(expected_ids)
    assert all(isinstance(answer, str) for answer in predictions.values())
    nbest = json.loads((model_dir / "nbest_predictions.json").read_text())
    assert sorted(nbest) == sorted(expected_ids)
    for qid, candidates in nbest.items():
        assert 1 <= len(candidates) <= 5
        assert abs(sum(c["probability"] for c in candidates) - 1) < 1e-4
        assert candidates[0]["text"] == predictions[qid]
    assert os.path.exists(model_dir / "model.keras")
    assert not os.path.exists(model_dir / "null_odds.json")
    assert os.listdir(model_dir / "checkpoints") == ["epoch-01.weights.h5"]


def test_malformed_squad_fails_before_training(tmp_path, no_training):
    from kzoo.tasks.squad import SquadRun, run_squad

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [
        {"context": "Oslo is the capital of Norway.",
         "qas": [{"id": "q1", "question": "What is the capital of Norway?",
                  "answers": [{"text": "Oslo", "answer_start": 0}]},
                 {"id": "q2", "question": "Which country?", "answers": [{"text": "Norway"}]}]}]}]}))
    not_json = tmp_path / "not.json"
    not_json.write_text("{\"data\": [")
    (flags, message), *others = [
        ({"train_file": bad, "holdout_articles": 0, "predict_file": bad},
         f"{bad}: data[0].paragraphs[0].qas[1].answers[0].answer_start is missing"),
        ({"train_file": tmp_path / "missing.json", "holdout_articles": 1}, "missing.json: cannot read"),
        ({"train_file": not_json, "holdout_articles": 1}, f"{not_json}: not valid SQuAD JSON"),
        ({"train_file": bad, "holdout_articles": 1, "max_seq_length": 64},
         "max_seq_length 64 leaves no room for the context after a question of max_query_length 64"),
    ]
    # As a user meets it: the script exits non-zero with the message, having trained nothing.
    run = _run([f"--{name}={value}" for name, value in flags.items()] + [f"--model_dir={tmp_path / 'run'}"],
               tmp_path, timeout=300)
    assert run.returncode != 0 and message in run.stderr, run.stderr[-2000:]
    assert "Epoch 1" not in run.stdout
    assert not os.path.exists(tmp_path / "run" / "model.keras")
    # The other inputs through run_squad, which the script calls with its parsed flags.
    no_training()
    for flags, message in others:
        flags = {name: value if isinstance(value, int) else str(value) for name, value in flags.items()}
        with pytest.raises(ValueError, match=re.escape(message)):
            run_squad(SquadRun(model_dir=str(tmp_path / "run"), **flags))
        assert not os.path.exists(tmp_path / "run" / "model.keras")


def _v2_file(path):
    """A tiny SQuAD 2.0 file: answerable and is_impossible questions on two contexts."""
    paragraphs = []
    for context, questions in [
        ("The Eiffel Tower was completed in 1889 in Paris. It was designed by the engineering company of "
         "Gustave Eiffel and is 330 metres tall.",
         [("When was the Eiffel Tower completed?", "1889"), ("Who designed the Eiffel Tower?", "Gustave Eiffel"),
          ("How tall is the Eiffel Tower?", "330 metres"), ("When was the Eiffel Tower demolished?", None)]),
        ("Mount Everest is the highest mountain above sea level. It lies in the Himalayas on the border between "
         "Nepal and China.",
         [("Where is Mount Everest?", "the Himalayas"), ("What is the highest mountain?", "Mount Everest"),
          ("Who first climbed Mount Everest in 1800?", None), ("How deep is Mount Everest?", None)]),
    ]:
        qas = []
        for question, answer in questions:
            qa = {"id": f"q{len(paragraphs)}{len(qas)}", "question": question, "is_impossible": answer is None,
                  "answers": []}
            if answer is not None:
                qa["answers"] = [{"text": answer, "answer_start": context.index(answer)}]
            qas.append(qa)
        paragraphs.append({"context": context, "qas": qas})
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "tiny", "paragraphs": paragraphs}]}))
    return [qa["id"] for p in paragraphs for qa in p["qas"]]


def test_squad_v2_tiny(tmp_path, tiny_bert_folder):
    data_file = tmp_path / "tiny-v2.json"
    ids = _v2_file(data_file)
    model_dir = tmp_path / "run"
    run = _run(SMALL + [f"--train_file={data_file}", f"--predict_file={data_file}", "--version_2_with_negative",
                        f"--init_checkpoint={tiny_bert_folder(2, hf=True)}", "--max_seq_length=64", "--doc_stride=32",
                        f"--model_dir={model_dir}"], tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    exact, f1, total = _evaluation(run.stdout)
    assert 0 <= exact <= 100 and 0 <= f1 <= 100 and total == len(ids)
    assert any(line.startswith("has answer: ") for line in run.stdout.splitlines())
    predictions = json.loads((model_dir / "predictions.json").read_text())
    assert sorted(predictions) == sorted(ids) and all(isinstance(a, str) for a in predictions.values())
    null_odds = json.loads((model_dir / "null_odds.json").read_text())
    assert sorted(null_odds) == sorted(ids) and all(isinstance(v, float) for v in null_odds.values())
    nbest = json.loads((model_dir / "nbest_predictions.json").read_text())
    assert all("" in [c["text"] for c in candidates] for candidates in nbest.values())
    assert os.path.exists(model_dir / "model.keras")
