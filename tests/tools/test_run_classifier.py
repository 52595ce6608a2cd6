"""tools/run_classifier.py end to end, as a user runs it."""

import os
import subprocess
import sys

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


def test_bad_inputs_fail_before_training(tmp_path):
    bad_eval = tmp_path / "eval.tsv"
    bad_eval.write_text("text\tlabel\nplay jazz\tmusic\nbook a cab\ttaxi\n")
    for args, message in [
        ([f"--eval_file={bad_eval}"], f"{bad_eval}:3: unknown label 'taxi'"),
        ([f"--train_file={tmp_path / 'missing.tsv'}"], "missing.tsv: cannot read"),
        (["--task=trec"], "expected 'COARSE:fine question'"),
    ]:
        run = _run(args + [f"--model_dir={tmp_path / 'run'}"], tmp_path, timeout=300)
        assert run.returncode != 0 and message in run.stderr, run.stderr[-2000:]
        assert "Epoch 1" not in run.stdout


def test_lora_run_saves_small_weights_and_exports_merged(tmp_path, minilm_hf_folder):
    import keras
    import numpy as np
    import re
    import tensorflow as tf

    from kzoo.text import BertPacker, BertTokenizer

    export_dir = tmp_path / "export"
    run = _run(["--num_train_epochs=1", "--lora_rank=4", "--learning_rate=1e-3", f"--model_dir={tmp_path / 'run'}",
                f"--export_dir={export_dir}", "--verbose=2"], tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    match = re.search(r"trainable parameters: ([\d,]+) of ([\d,]+) \((\d+\.\d\d)%\)", run.stderr)
    trainable, total = (int(match.group(i).replace(",", "")) for i in (1, 2))
    # LoRA (2 targets x 6 blocks x r(in+out)) + 13 LayerNorms + pooler + 6-class head
    assert trainable == 2 * 6 * 4 * (384 + 384) + 13 * 2 * 384 + (384 * 384 + 384) + (384 * 6 + 6)
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
