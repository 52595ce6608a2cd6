"""The wheel, installed into a fresh virtualenv, carries kzoo, its example data and the console commands, and
every command's --help explains every flag it takes (the shared ones included).

The wheel is built offline from a copy of the sources (nothing is written into the checkout). The new
virtualenv sees the dependencies through a .pth line naming this environment's site-packages: a folder added
that way does not get its own .pth files run, so the editable install of kzoo there stays out of it."""

import ast
import concurrent.futures
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from tests.conftest import REPO

SHARED = ("init_checkpoint", "bert_config_file", "vocab_file", "learning_rate", "num_train_epochs",
          "warmup_proportion", "distribution_strategy", "verbose", "num_gpus", "worker_hosts", "task_index", "tpu",
          "dtype_policy", "backup_steps", "static_shapes")
DISTRIBUTION = SHARED[6:7] + SHARED[8:]
# command -> (its module, flags its --help must explain)
COMMANDS = {
    "kzoo-run-classifier": ("run_classifier", SHARED + ("predict_file", "aux_mlm_weight", "adapter_type")),
    "kzoo-run-squad": ("run_squad", SHARED + ("doc_stride", "version_2_with_negative", "lora_rank")),
    "kzoo-run-tagger": ("run_tagger", SHARED + ("strict_iob2", "tag_column")),
    "kzoo-run-pretraining": ("run_pretraining", SHARED + ("masked_lm_prob", "nsp", "input_files")),
    "kzoo-export-classifier": ("export_classifier", ("model_dirs", "export_dir", "weights", "pair")),
    "kzoo-fill-mask": ("fill_mask", ("checkpoint", "text", "top_k")),
    "kzoo-benchmark": ("benchmark", ("quick", "output_json", "data_file", "measure_xla")),
    "kzoo-compare-adaptation": ("compare_adaptation", DISTRIBUTION + ("techniques", "task", "init_checkpoint")),
    "kzoo-list-presets": ("list_presets", ("family", "format", "cached", "cache_dir")),
    "kzoo-evaluate-retrieval": ("evaluate_retrieval", ("squad_file", "saved_model", "approximate", "eval_fraction",
                                                       "pooling", "split_seed", "normalize")),
    "kzoo-run-dual-encoder": ("run_dual_encoder", SHARED + ("squad_file", "symmetric", "scale", "shared_towers",
                                                            "lora_rank", "pooling", "split_seed")),
    "kzoo-tune-classifier": ("tune_classifier", SHARED + ("tuner", "max_trials", "search_space", "num_seeds",
                                                          "export_ensemble", "eval_file", "split_seed", "dropout",
                                                          "layerwise_lr_decay", "oracle_address")),
}


def _run(command, **kwargs):
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert run.returncode == 0, (command, run.stdout[-2000:], run.stderr[-4000:])
    return run


def _install_wheel(root):
    """Builds the wheel from a copy of the sources and installs it into a new virtualenv under `root`;
    returns (the wheel, the virtualenv, the environment that puts its bin folder first on PATH)."""
    source = root / "source"
    shutil.copytree(os.path.join(REPO, "kzoo"), source / "kzoo", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), source / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PIP_")}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w",
          str(root / "dist"), str(source)], env=env)
    (wheel,) = (root / "dist").glob("kzoo-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], env=env)
    python = str(venv / "bin" / "python")
    site_packages = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         env=env).stdout.strip()
    pathlib.Path(site_packages, "kzoo_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", str(wheel)], env=env,
         cwd=str(root))
    return wheel, venv, dict(env, PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")


def _described_flags(help_text):
    """flag -> its help text (which may start on the line after the flag's name)."""
    described = {}
    for block in re.split(r"\n(?=\s+--)", help_text):
        match = re.match(r"\s+--(?:\[no\])?(\w+):\s*(.*)", block, flags=re.S)
        if match:
            described[match.group(1)] = " ".join(match.group(2).split())
    return described


@pytest.mark.slow
def test_installed_wheel_has_every_command_explain_its_flags(tmp_path):
    wheel, venv, env = _install_wheel(tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    assert {"kzoo/data/examples/intents.tsv", "kzoo/data/examples/README.md", "kzoo/cli/__init__.py",
            "kzoo/cli/console.py", "kzoo/cli/flags.py"} <= names
    assert {f"kzoo/cli/{module}.py" for module, _ in COMMANDS.values()} <= names
    for command, (module, _) in COMMANDS.items():
        assert f"{command} = kzoo.cli.{module}:run" in scripts
    # kzoo comes from the wheel: the editable install's .pth hook (which would find the checkout) did not run
    origin, hooks = _run([str(venv / "bin" / "python"), "-c", "import importlib.util, sys; print(importlib.util."
                          "find_spec('kzoo').origin); print([m for m in sys.modules if m.startswith('__editable__')])"],
                         env=env, cwd=str(tmp_path)).stdout.splitlines()
    assert origin.startswith(str(venv) + os.sep) and origin.endswith(os.path.join("kzoo", "__init__.py")), origin
    assert hooks == "[]", hooks

    # Each console command as a user runs it, from a folder outside the checkout, two at a time.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = dict(zip(COMMANDS, pool.map(
            lambda command: subprocess.run([command, "--help"], capture_output=True, text=True, timeout=300,
                                           cwd=str(tmp_path), env=env), COMMANDS)))
    for command, (module, key_flags) in COMMANDS.items():
        help_text = runs[command].stdout
        assert "flags:" in help_text, (command, runs[command].stderr[-3000:])  # absl exits 1 after --help
        # (importing the module here would define its flags in this process)
        source = pathlib.Path(REPO, "kzoo", "cli", f"{module}.py").read_text(encoding="utf-8")
        summary = ast.get_docstring(ast.parse(source)).splitlines()[0]
        assert help_text.startswith(summary), (command, help_text[:300])  # the module's docstring, not usage only
        assert "%%" not in help_text, command
        described = _described_flags(help_text)
        assert set(key_flags) <= set(described), (command, sorted(set(key_flags) - set(described)))
        unexplained = {name: text for name, text in described.items() if len(text.split("(default:")[0]) < 12}
        assert not unexplained, (command, unexplained)
    # The default training file is the example the wheel installs (package data).
    default = re.search(r"--train_file: .*?\(default: '([^']+)'\)", runs["kzoo-run-classifier"].stdout, re.S).group(1)
    default = re.sub(r"\n\s+", "", default)  # absl wraps long defaults (after the hyphen of site-packages)
    assert default.startswith(str(venv) + os.sep) and os.path.isfile(default), default
