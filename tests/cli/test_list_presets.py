"""kzoo-list-presets: the registry as a table, filtered by family and by what the cache holds."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_lists_a_family_and_what_is_cached(tmp_path):
    cache = tmp_path / "cache"
    (cache / "electra_base").mkdir(parents=True)
    (cache / "electra_base" / "kzoo_manifest.json").write_text(json.dumps({"files": {}}))
    (cache / "electra_small").mkdir()  # a folder without a manifest is not a finished download

    def run(*args):
        done = subprocess.run([sys.executable, "-m", "kzoo.cli.list_presets", f"--cache_dir={cache}", *args],
                              capture_output=True, text=True, timeout=300, cwd=REPO,
                              env=dict(os.environ, PYTHONPATH=REPO))
        assert done.returncode == 0, done.stderr[-3000:]
        return [line.split("|")[1].strip() for line in done.stdout.splitlines()
                if line.startswith("| ") and not line.startswith("| name")]

    assert run("--family=electra") == ["electra_small", "electra_base", "electra_large"]
    assert run("--family=electra", "--cached") == ["electra_base"]
    assert "minilm" in run("--cached")  # ships in a pip package: always there
