"""Every script's --help explains every flag it takes, the shared ones included."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

SHARED = ("init_checkpoint", "bert_config_file", "vocab_file", "learning_rate", "num_train_epochs",
          "warmup_proportion", "distribution_strategy", "verbose", "num_gpus", "worker_hosts", "task_index", "tpu",
          "dtype_policy", "backup_steps", "static_shapes")


@pytest.mark.parametrize("script, own", [("run_classifier", "predict_file"), ("run_tagger", "strict_iob2"),
                                         ("run_squad", "doc_stride"), ("run_pretraining", "masked_lm_prob")])
def test_help_lists_every_flag_with_an_explanation(script, own):
    run = subprocess.run([sys.executable, os.path.join(REPO, "tools", f"{script}.py"), "--help"],
                         capture_output=True, text=True, timeout=300)
    assert "flags:" in run.stdout, run.stderr[-2000:]  # absl exits with status 1 after --help
    described = {}  # flag -> its help text (which may start on the line after the flag's name)
    for block in re.split(r"\n(?=\s+--)", run.stdout):
        match = re.match(r"\s+--(?:\[no\])?(\w+):\s*(.*)", block, flags=re.S)
        if match:
            described[match.group(1)] = " ".join(match.group(2).split())
    for name in SHARED + (own,):
        assert name in described and len(described[name]) > 10, (name, sorted(described))
