"""Builds the shared test material of `tests/text/test_family_packing.family_assets` and
`tests/family_models.tiny_family_folders` in the background (run as a script, not collected).

`tests/conftest.py` starts it once per pytest run, in the process that starts the workers, so the
~80 s build (SentencePiece and BPE training, transformers building six tiny models) overlaps the
tests instead of holding up the worker that needs it first while the other waits. It takes the same
file locks as the fixtures, the assets lock before any slow import; a fixture that gets there first
builds itself and this script finds the work done. Any failure (no ../shared, no test extras) only
leaves the fixtures to build or skip as they would without it.

    python tests/build_family_models.py <the run's base temporary folder>
"""

import fcntl
import os
import pathlib
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(base):
    base = pathlib.Path(base)
    with open(base / "kzoo_family_assets.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # before the imports below, which take seconds
        sys.path.insert(0, REPO)
        from tests.text import test_family_packing as packing

        assets_root = base / "kzoo_family_assets"
        assets_root.mkdir(parents=True, exist_ok=True)
        if not (assets_root / "reference.json").exists():
            packing._build(assets_root)
    from tests import family_models
    from tests.conftest import minilm_vocab_file

    models_root = base / "kzoo_family_models"
    models_root.mkdir(parents=True, exist_ok=True)
    with open(base / "kzoo_family_models.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (models_root / "done").exists():
            family_models._build(models_root, packing.FamilyAssets(assets_root), minilm_vocab_file())


if __name__ == "__main__":
    main(sys.argv[1])
