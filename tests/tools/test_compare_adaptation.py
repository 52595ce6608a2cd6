"""tools/compare_adaptation.py on the shipped intents example: one row per technique, JSON and markdown."""

import json
import os
import subprocess
import sys

from kzoo.data import EXAMPLE_INTENTS
from tests.conftest import REPO

KEYS = {"technique", "trainable_params", "trainable_percent", "val_error", "wall_seconds", "stored_bytes"}


def test_compare_techniques(tmp_path, minilm_hf_folder):
    out_json, out_md = tmp_path / "results.json", tmp_path / "results.md"
    run = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "compare_adaptation.py"), "--task=tsv",
         f"--train_file={EXAMPLE_INTENTS}", "--techniques=aux_mlm,distilled_3_layer", "--num_train_epochs=1",
         "--max_seq_length=32", f"--work_dir={tmp_path / 'work'}", f"--output_json={out_json}",
         f"--output_markdown={out_md}"], capture_output=True, text=True, timeout=900, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-4000:]
    rows = json.loads(out_json.read_text())
    assert [r["technique"] for r in rows] == ["aux_mlm", "distilled_3_layer"]  # the teacher is not a row
    assert all(KEYS <= set(r) and 0 <= r["val_error"] <= 1 and r["wall_seconds"] > 0 for r in rows)
    aux, student = rows
    assert aux["trainable_percent"] == 100.0 and aux["total_params"] == 22_715_526  # the MLM head is not stored
    assert student["total_params"] == aux["total_params"] - 3 * 1_774_464  # three blocks fewer
    assert student["stored_bytes"] < aux["stored_bytes"] * 0.8
    assert os.path.isdir(tmp_path / "work" / "full")  # the distillation teacher ran first
    table = out_md.read_text()
    assert table.splitlines()[0].startswith("| technique | trainable parameters |") and len(table.splitlines()) == 4
    assert table in run.stdout
