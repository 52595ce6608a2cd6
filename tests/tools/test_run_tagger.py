"""tools/run_tagger.py end to end, as a user runs it."""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = os.path.join(REPO, "tools", "run_tagger.py")

PEOPLE = [["John", "Smith"], ["Mary"], ["Peter", "Blackburn"], ["Angela", "Merkel"], ["Tom"]]
PLACES = [["Paris"], ["New", "York"], ["Berlin"], ["London"], ["South", "Africa"]]
ORGS = [["Google"], ["European", "Union"], ["Reuters"], ["Siemens"], ["United", "Nations"]]
TAGS = {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"}


def _entity(words, type_):
    return [(word, ("B-" if i == 0 else "I-") + type_) for i, word in enumerate(words)]


def _sentences():
    """40 short CoNLL-2003-like sentences built from a few repeated patterns."""
    out = []
    for i in range(40):
        per, loc, org = PEOPLE[i % 5], PLACES[(i * 2) % 5], ORGS[(i * 3) % 5]
        pattern = i % 4
        if pattern == 0:
            words = _entity(per, "PER") + [("visited", "O")] + _entity(loc, "LOC") + [(".", "O")]
        elif pattern == 1:
            words = _entity(per, "PER") + [("works", "O"), ("for", "O")] + _entity(org, "ORG") + [(".", "O")]
        elif pattern == 2:
            words = _entity(org, "ORG") + [("opened", "O"), ("an", "O"), ("office", "O"), ("in", "O")] + \
                _entity(loc, "LOC") + [(".", "O")]
        else:
            words = [("The", "O"), ("meeting", "O"), ("in", "O")] + _entity(loc, "LOC") + \
                [("was", "O"), ("quiet", "O"), (".", "O")]
        out.append(words)
    return out


def _write_conll(path, sentences):
    """CoNLL-2003 layout: token POS chunk NER, -DOCSTART- every 20 sentences."""
    lines = []
    for i, words in enumerate(sentences):
        if i % 20 == 0:
            lines += ["-DOCSTART- -X- -X- O", ""]
        lines += [f"{word} NNP I-NP {tag}" for word, tag in words] + [""]
    path.write_text("\n".join(lines) + "\n")


def _run(args, cwd, timeout=600):
    return subprocess.run([sys.executable, SCRIPT] + args, capture_output=True, text=True, timeout=timeout,
                          cwd=str(cwd))


def test_train_evaluate_predict(tmp_path, tiny_bert_folder):
    """From a tiny 2-block BERT in a Hugging Face folder with the real vocabulary: nothing checked here
    depends on pretrained weights."""
    sentences = _sentences()
    train = tmp_path / "train.conll"
    _write_conll(train, sentences)
    model_dir = tmp_path / "run"
    run = _run([f"--train_file={train}", f"--predict_file={train}", f"--init_checkpoint={tiny_bert_folder(2, hf=True)}",
                "--num_train_epochs=2", "--train_batch_size=8", "--eval_batch_size=16", "--max_seq_length=32",
                "--learning_rate=1e-4", "--validation_fraction=0.2", f"--model_dir={model_dir}", "--verbose=2",
                "--adapter_type=pfeiffer", "--adapter_size=16"],
               tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert re.search(r"trainable parameters: [\d,]+ of [\d,]+ \(\d+\.\d\d%\)", run.stderr)
    assert os.path.exists(model_dir / "adaptation_weights.npz")  # what this task adds to the shared encoder
    lines = run.stdout.splitlines()
    evaluation = next(l for l in lines if l.startswith("evaluation: "))
    match = re.fullmatch(r"evaluation: precision (\S+), recall (\S+), f1 (\S+) \((\d+) sentences, (\d+) s training\)",
                         evaluation)
    assert match, evaluation
    precision, recall, f1 = (float(match.group(i)) for i in (1, 2, 3))
    assert all(0.0 <= v <= 1.0 for v in (precision, recall, f1))
    assert int(match.group(4)) == 8  # round(40 * 0.2) held out
    predictions = model_dir / "predictions.conll"
    assert f"predictions: {predictions}" in lines
    assert "val_entity_f1" in run.stdout  # the per-epoch entity scores reach the Keras logs

    blocks = predictions.read_text().split("\n\n")
    assert blocks[-1] == ""  # the file ends with the blank line after the last sentence
    predicted = [[line.split("\t") for line in block.split("\n")] for block in blocks[:-1]]
    assert len(predicted) == len(sentences)
    for words, rows in zip(sentences, predicted):
        assert all(len(row) == 2 for row in rows)
        assert [row[0] for row in rows] == [word for word, _ in words]
        assert {row[1] for row in rows} <= TAGS

    assert os.path.exists(model_dir / "model.keras")
    assert sorted(json.loads((model_dir / "tags.json").read_text())) == sorted(TAGS)
    assert sorted(os.listdir(model_dir / "checkpoints")) == ["epoch-01.weights.h5", "epoch-02.weights.h5"]
    assert os.listdir(model_dir / "logs")  # TensorBoard event files
    assert not [name for name in os.listdir(model_dir) if name.startswith(".tmp")]


def test_bad_inputs_fail_before_training(tmp_path, no_training):
    from kzoo.tasks import TaggerRun, run_tagger

    bad = tmp_path / "bad.conll"
    bad.write_text("-DOCSTART- -X- -X- O\n\nJohn NNP I-NP B-PER\nvisited VBD I-VP O\nParis NNP I-NP X-LOC\n")
    good = tmp_path / "train.conll"
    _write_conll(good, _sentences()[:4])
    unknown = tmp_path / "eval.conll"
    unknown.write_text("John B-PER\n\nThe O\nEU B-MISC\n")
    (flags, message), *others = [
        ({"train_file": bad}, f"{bad}:5: tag 'X-LOC' is not O, B-TYPE or I-TYPE"),
        ({"train_file": good, "eval_file": unknown}, f"{unknown}:4: tag 'B-MISC' does not occur"),
        ({"train_file": good, "predict_file": tmp_path / "missing.conll"}, "missing.conll: cannot read"),
    ]
    # As a user meets it: the script exits non-zero with the message, having trained nothing.
    run = _run([f"--{name}={value}" for name, value in flags.items()] + [f"--model_dir={tmp_path / 'run'}"],
               tmp_path, timeout=300)
    assert run.returncode != 0 and message in run.stderr, run.stderr[-2000:]
    assert "Epoch 1" not in run.stdout
    assert not os.path.exists(tmp_path / "run")
    # The other inputs through run_tagger, which the script calls with its parsed flags.
    no_training()
    for flags, message in others:
        with pytest.raises(ValueError, match=re.escape(message)):
            run_tagger(TaggerRun(model_dir=str(tmp_path / "run"),
                                 **{name: str(value) for name, value in flags.items()}))
        assert not os.path.exists(tmp_path / "run")
