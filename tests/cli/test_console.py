"""kzoo.cli.console: a command's console shows kzoo's own log lines, warnings and errors, and TensorFlow's INFO
lines only with an explicit --verbosity."""

import logging
import os
import re
import subprocess
import sys

import pytest

from kzoo.cli import console
from tests.conftest import REPO

NATIVE_INFO = re.compile(r"^I\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+\.(?:cc|h|cpp):\d+\] ", re.M)  # C++
PYTHON_INFO = re.compile(r"^I\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ (\S+\.py):\d+\] ", re.M)  # absl's format


@pytest.mark.parametrize("argv, expected", [
    ([], False), (["--verbosity=1"], True), (["-v", "0"], True), (["--v=-1"], True), (["--verbose=2"], False),
    (["--model_dir=x", "--", "--verbosity=1"], False), (["--nov"], False)])
def test_verbosity_requested(argv, expected):
    assert console.verbosity_requested(argv) is expected


def test_verbosity_requested_in_a_flagfile(tmp_path):
    flagfile = tmp_path / "run.flags"
    flagfile.write_text("--model_dir=runs/x\n--verbosity=0\n")
    assert console.verbosity_requested([f"--flagfile={flagfile}"])
    assert console.verbosity_requested(["--flagfile", str(flagfile)])
    flagfile.write_text("--model_dir=runs/x\n")
    assert not console.verbosity_requested([f"--flagfile={flagfile}"])


@pytest.mark.parametrize("argv0, orig_argv, expected", [
    ("/venv/bin/kzoo-run-classifier", ["/venv/bin/python", "/venv/bin/kzoo-run-classifier"], True),
    ("-m", ["python", "-X", "importtime", "-m", "kzoo.cli.fill_mask", "--help"], True),
    ("-m", ["python", "-m", "pytest", "kzoo.cli.fill_mask"], False),
    (os.path.join(REPO, "tools", "run_classifier.py"), ["python", "tools/run_classifier.py"], True),
    (os.path.join(REPO, "tests", "tools", "x.py"), ["python", "tests/tools/x.py"], False)])
def test_started_as_command(monkeypatch, argv0, orig_argv, expected):
    monkeypatch.setattr(sys, "argv", [argv0])
    monkeypatch.setattr(sys, "orig_argv", orig_argv)
    assert console.started_as_command() is expected


def test_filter_drops_tensorflow_info_keeps_kzoo_and_warnings(tmp_path, caplog):
    import tensorflow as tf

    from kzoo.checkpoints.report import LoadReport

    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="absl")  # absl's logger has its own level (--verbosity)
    LoadReport(source="ckpt", loaded=["a"], unused=[], missing=[]).log()  # kzoo, through absl
    logging.getLogger("kzoo.text.squad.reading").info("a kzoo module's own logger")
    logging.getLogger("tensorflow").warning("a warning")
    module = tf.Module()
    module.scale = tf.Variable(2.0)
    module.__call__ = tf.function(lambda x: x * module.scale, input_signature=[tf.TensorSpec([], tf.float32)],
                                  autograph=False)
    tf.saved_model.save(module, str(tmp_path / "saved"))  # TensorFlow logs "Assets written to" at INFO

    passed = {r.getMessage() for r in caplog.records if console.KzooInfoFilter().filter(r)}
    tensorflow_info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and "kzoo" not in
                       r.pathname and not r.name.startswith("kzoo")]
    assert any(m.startswith("Assets written to") for m in tensorflow_info), [r.getMessage() for r in caplog.records]
    assert not passed & set(tensorflow_info)
    assert {"Loaded 1 parameters from ckpt; 0 discarded, 0 added.", "a kzoo module's own logger",
            "a warning"} <= passed


def test_native_info_lines_are_dropped_from_descriptor_2(capfd):
    with console._native_info_dropped():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1796527842.131793    6485 port.cc:153] oneDNN custom operations are on.\n"
                    b"W0000 00:00:1796527842.132176    6485 some.cc:31] a native warning\n")
        os.write(2, b"a warning printed by Python\n")
        os.write(2, b"I1206 03:30:48.689358  139700918664064 cudart_stub.cc:31] Could not find cuda drivers\n")
    assert capfd.readouterr().err == "W0000 00:00:1796527842.132176    6485 some.cc:31] a native warning\n" \
                                     "a warning printed by Python\n"


def _classifier_model_dir(path):
    """A 1-block classifier model_dir with an 8-word vocabulary, as kzoo-run-classifier writes one."""
    from kzoo import models
    from kzoo.configs import BertConfig
    from kzoo.training import save_model, save_tokenizer

    vocab = path.parent / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]) + "\n")
    config = BertConfig(vocab_size=8, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8,
                        max_position_embeddings=16)
    save_model(models.bert_classifier(config, num_classes=2), str(path), labels=["neg", "pos"])
    save_tokenizer(str(vocab), True, str(path))
    return path


@pytest.mark.slow
def test_export_command_is_quiet_unless_verbosity_is_given(tmp_path):
    """The same export twice: tools/export_classifier.py as it starts by default, then `python -m` with
    --verbosity=1, which shows TensorFlow's C++ start-up lines and its Python INFO records again."""
    model_dir = _classifier_model_dir(tmp_path / "run")
    args = [f"--model_dirs={model_dir}", "--max_seq_length=16"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run([sys.executable, os.path.join(REPO, "tools", "export_classifier.py"), *args,
                            f"--export_dir={tmp_path / 'quiet'}"], capture_output=True, text=True, timeout=300,
                           cwd=str(tmp_path), env=env)
    assert quiet.returncode == 0, quiet.stderr[-4000:]
    assert quiet.stdout.strip() == f"exported SavedModel (model): {tmp_path / 'quiet' / '1'}"
    assert not NATIVE_INFO.search(quiet.stderr), quiet.stderr
    assert "INFO:tensorflow" not in quiet.stderr and "Assets written to" not in quiet.stderr, quiet.stderr
    kzoo_files = {name for _, _, names in os.walk(os.path.join(REPO, "kzoo")) for name in names}
    assert set(PYTHON_INFO.findall(quiet.stderr)) <= kzoo_files, quiet.stderr

    verbose = subprocess.run([sys.executable, "-m", "kzoo.cli.export_classifier", *args, "--verbosity=1",
                              f"--export_dir={tmp_path / 'verbose'}"], capture_output=True, text=True, timeout=300,
                             cwd=str(tmp_path), env=dict(env, PYTHONPATH=REPO))
    assert verbose.returncode == 0, verbose.stderr[-4000:]
    assert NATIVE_INFO.search(verbose.stderr) and "Assets written to" in verbose.stderr, verbose.stderr
    assert set(PYTHON_INFO.findall(verbose.stderr)) - kzoo_files  # TensorFlow's files log again
