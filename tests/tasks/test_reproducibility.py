"""Two runs of the same run_classifier command with the same --seed, on the same machine, give the same
predictions bit for bit (CPU: seeded split, shuffle, dropout and head initialisation, and TensorFlow's CPU
kernels reduce in a fixed order); another seed gives other predictions, so the comparison can fail."""

import os
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = os.path.join(REPO, "tools", "run_classifier.py")


def test_same_seed_same_predictions_bit_for_bit(tmp_path, tiny_bert_folder):
    predict = tmp_path / "predict.tsv"
    predict.write_text("text\n" + "".join(f"{t}\n" for t in [
        "set an alarm for 7 am", "will it snow in oslo on friday", "play some jazz", "book a table for two",
        "how are you today", "a train to paris tomorrow"]))
    checkpoint = tiny_bert_folder(1)

    def start(name, seed):
        args = [sys.executable, SCRIPT, f"--init_checkpoint={checkpoint}", "--num_train_epochs=2",
                "--learning_rate=1e-3", f"--seed={seed}", "--validation_fraction=0", f"--predict_file={predict}",
                f"--model_dir={tmp_path / name}", "--export_dir=", "--verbose=0"]
        return subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    runs = {name: start(name, seed) for name, seed in (("first", 7), ("again", 7), ("other_seed", 8))}
    predictions = {}
    for name, process in runs.items():
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-4000:]
        assert "trained on all 360 examples" in stdout and "no evaluation" in stdout, stdout
        predictions[name] = (tmp_path / name / "predictions.tsv").read_bytes()
    assert len(predictions["first"].splitlines()) == 7
    assert predictions["again"] == predictions["first"]
    assert predictions["other_seed"] != predictions["first"]
    # The file rounds to 6 decimals; the trained weights themselves are equal to the bit.
    import keras
    import numpy as np

    first, again = (keras.models.load_model(tmp_path / name / "model.keras", compile=False)
                    for name in ("first", "again"))
    assert len(first.weights) == len(again.weights) > 0
    for a, b in zip(first.weights, again.weights):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)), a.path
