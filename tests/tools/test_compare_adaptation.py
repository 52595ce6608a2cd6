"""tools/compare_adaptation.py on the shipped intents example: one row per technique, JSON and markdown.

The encoder is a tiny 4-block BERT with the real vocabulary (conftest's `tiny_bert_folder`): what is
checked here (the rows, the teacher running first, the counts and sizes) does not depend on pretrained
weights, and MiniLM's own fine-tuning through run_classifier is the quickstart test's."""

import json
import os
import subprocess
import sys

import pytest

from kzoo.data import EXAMPLE_INTENTS
from tests.conftest import REPO, tiny_bert_parameters

KEYS = {"technique", "trainable_params", "trainable_percent", "val_error", "wall_seconds", "stored_bytes"}


@pytest.mark.slow
def test_compare_techniques(tmp_path, tiny_bert_folder):
    out_json, out_md = tmp_path / "results.json", tmp_path / "results.md"
    run = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "compare_adaptation.py"), "--task=tsv",
         f"--train_file={EXAMPLE_INTENTS}", f"--init_checkpoint={tiny_bert_folder(4, hf=True)}",
         "--techniques=distilled_3_layer", "--num_train_epochs=1", "--max_seq_length=32",
         f"--work_dir={tmp_path / 'work'}", f"--output_json={out_json}", f"--output_markdown={out_md}"],
        capture_output=True, text=True, timeout=900, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-4000:]
    rows = json.loads(out_json.read_text())
    assert [r["technique"] for r in rows] == ["distilled_3_layer"]  # the teacher ("full") is not a row
    (student,) = rows
    assert KEYS <= set(student) and 0 <= student["val_error"] <= 1 and student["wall_seconds"] > 0
    assert student["total_params"] == tiny_bert_parameters(num_layers=3, num_classes=6)  # the teacher's lowest 3 blocks
    assert student["trainable_percent"] == 100.0
    assert student["stored_bytes"] > 4 * student["total_params"]  # every float32 weight, plus the npz index
    assert os.path.isdir(tmp_path / "work" / "full")  # the distillation teacher ran first
    table = out_md.read_text()
    assert table.splitlines()[0].startswith("| technique | trainable parameters |") and len(table.splitlines()) == 3
    assert table in run.stdout
