"""tools/run_classifier.py end to end, as a user runs it."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = os.path.join(REPO, "tools", "run_classifier.py")


def _run(args, cwd, timeout=600):
    return subprocess.run([sys.executable, SCRIPT] + args, capture_output=True, text=True, timeout=timeout,
                          cwd=str(cwd))


def test_quickstart_with_predictions(tmp_path, minilm_hf_folder):
    export_dir = tmp_path / "savedmodels" / "intents"
    predict = tmp_path / "predict.tsv"
    predict.write_text("uid\ttext\nq7\tset an alarm for 7 am\nq9\twill it snow in Oslo on friday\n")
    run = _run(["--num_train_epochs=2", f"--model_dir={tmp_path / 'run'}", f"--export_dir={export_dir}",
                f"--predict_file={predict}", "--id_column=uid", "--verbose=2"], tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    lines = run.stdout.splitlines()
    evaluation = next(l for l in lines if l.startswith("evaluation: "))
    accuracy = float(evaluation.split("accuracy ")[1].split(",")[0].split(" ")[0])
    assert accuracy > 0.5  # 6 classes: chance is 0.17
    # all-MiniLM-L6-v2 was trained to mean-pool (its pooler never was): the head reads what it was trained for
    assert "pooling: mean (the checkpoint's sentence-transformers pooling)" in run.stderr
    assert f"exported SavedModel: {export_dir / '1'}" in lines
    assert any(l.startswith("prediction through serving_default: 'wake me up at 6:30 tomorrow' -> ")
               for l in lines)
    rows = [l.split("\t") for l in (tmp_path / "run" / "predictions.tsv").read_text().splitlines()]
    labels = ["alarm", "music", "restaurant", "smalltalk", "travel", "weather"]
    assert rows[0] == ["id", "label"] + [f"prob_{name}" for name in labels]
    assert [r[0] for r in rows[1:]] == ["q7", "q9"]
    for row in rows[1:]:
        probabilities = [float(p) for p in row[2:]]
        assert abs(sum(probabilities) - 1) < 1e-4 and row[1] == labels[probabilities.index(max(probabilities))]
    assert os.path.exists(export_dir / "1" / "saved_model.pb")
    assert os.path.exists(tmp_path / "run" / "model.keras")
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["epoch-01.weights.h5", "epoch-02.weights.h5"]
    assert os.listdir(tmp_path / "run" / "logs")  # TensorBoard event files


def test_bad_inputs_fail_before_training(tmp_path, no_training):
    from kzoo.tasks import ClassifierRun, run_classifier

    bad_eval = tmp_path / "eval.tsv"
    bad_eval.write_text("text\tlabel\nplay jazz\tmusic\nbook a cab\ttaxi\n")
    (flags, message), *others = [
        ({"eval_file": bad_eval}, f"{bad_eval}:3: unknown label 'taxi'"),
        ({"train_file": tmp_path / "missing.tsv"}, "missing.tsv: cannot read"),
        ({"task": "trec"}, "expected 'COARSE:fine question'"),
    ]
    # As a user meets it: the script exits non-zero with the message, having trained nothing.
    run = _run([f"--{name}={value}" for name, value in flags.items()] + [f"--model_dir={tmp_path / 'run'}"],
               tmp_path, timeout=300)
    assert run.returncode != 0 and message in run.stderr, run.stderr[-2000:]
    assert "Epoch 1" not in run.stdout
    # The other inputs through run_classifier, which the script calls with its parsed flags (a
    # process each would only repeat the start-up and the error report above).
    no_training()
    for flags, message in others:
        with pytest.raises(ValueError, match=re.escape(message)):
            run_classifier(ClassifierRun(model_dir=str(tmp_path / "run"), export_dir="",
                                         **{name: str(value) for name, value in flags.items()}))
    assert not os.path.exists(tmp_path / "run")


def test_lora_run_saves_small_weights_and_exports_merged(tmp_path, tiny_bert_folder):
    """From a tiny 2-block BERT in a Hugging Face folder (the real vocabulary, random weights)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from kzoo.text import BertPacker, BertTokenizer
    from tests.conftest import tiny_bert_parameters

    export_dir = tmp_path / "export"
    # A large rate, so that on random weights one epoch moves the LoRA factors far enough to change
    # the outputs (checked below: else the merged export would match without any merging).
    run = _run([f"--init_checkpoint={tiny_bert_folder(2, hf=True)}", "--num_train_epochs=1", "--lora_rank=4",
                "--learning_rate=0.1", f"--model_dir={tmp_path / 'run'}", f"--export_dir={export_dir}", "--verbose=2"],
               tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    match = re.search(r"trainable parameters: ([\d,]+) of ([\d,]+) \((\d+\.\d\d)%\)", run.stderr)
    trainable, total = (int(match.group(i).replace(",", "")) for i in (1, 2))
    # LoRA (2 targets x 2 blocks x r(in+out)) + 5 LayerNorms + pooler + 6-class head, at hidden size 32
    lora = 2 * 2 * 4 * (32 + 32)
    assert trainable == lora + 5 * 2 * 32 + (32 * 32 + 32) + (32 * 6 + 6)
    assert total == tiny_bert_parameters(num_layers=2, num_classes=6) + lora
    assert float(match.group(3)) == round(100 * trainable / total, 2)
    weights = tmp_path / "run" / "adaptation_weights.npz"
    assert os.path.getsize(weights) < os.path.getsize(tmp_path / "run" / "model.keras") / 20

    model = keras.models.load_model(tmp_path / "run" / "model.keras")  # still with LoRA
    tokenizer = BertTokenizer(str(tmp_path / "run" / "vocab.txt"))
    texts = ["set an alarm for 7 am", "play some jazz please"]
    packed = BertPacker.from_tokenizer(tokenizer, 64, dynamic_length=True)(tokenizer(tf.constant(texts)))
    expected = tf.nn.softmax(model(packed, training=False)).numpy()
    serving = tf.saved_model.load(str(export_dir / "1")).signatures["serving_default"]
    np.testing.assert_allclose(serving(text=tf.constant(texts))["probabilities"].numpy(), expected, atol=1e-5)
    lora_b = [v for v in model.weights if v.path.endswith("lora_b")]
    assert len(lora_b) == 2 * 2
    for v in lora_b:
        v.assign(np.zeros(v.shape, "float32"))
    without_lora = tf.nn.softmax(model(packed, training=False)).numpy()
    assert np.abs(without_lora - expected).max() > 1e-3  # 100 times the tolerance above (about 1e-2 here)
