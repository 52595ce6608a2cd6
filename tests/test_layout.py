"""The package tiers: a kzoo package imports only from the tiers below it (module-level and function-level imports
alike), so there are no import cycles between packages. The README's Architecture section states the same order."""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Lowest first; packages on one line form one tier and never import each other.
TIERS = [("io", "presets"), ("configs", "text"), ("layers",), ("models",), ("checkpoints",), ("data", "retrieval"),
         ("training",), ("export",), ("tasks",), ("cli",)]
RANK = {name: rank for rank, names in enumerate(TIERS) for name in names}


def _package(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "kzoo" else None


def _imports(path):
    """(line, imported kzoo module) for every import statement in a file, at any depth."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "kzoo":
            if node.module == "kzoo":
                yield from ((node.lineno, f"kzoo.{alias.name}") for alias in node.names)
            else:
                yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names if alias.name.startswith("kzoo."))


def _upward_imports():
    found = []
    for path in sorted((ROOT / "kzoo").rglob("*.py")):
        parts = [p for p in path.relative_to(ROOT).with_suffix("").parts if p != "__init__"]
        source = _package(".".join(parts))
        if source is None:  # kzoo/__init__.py gathers every package
            continue
        assert source in RANK, f"{path}: package kzoo.{source} is in no tier of this test (and of the README)"
        for line, module in _imports(path):
            target = _package(module)
            if target is None or target == source:
                continue
            if RANK[target] >= RANK[source]:
                found.append(f"{path.relative_to(ROOT)}:{line} kzoo.{source} imports {module}")
    return found


def test_packages_import_only_lower_tiers():
    assert _upward_imports() == []


def test_readme_states_the_same_tiers():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^Tiers, lowest first: (.+)$", readme, re.MULTILINE)
    assert match, "README.md has no 'Tiers, lowest first: ...' line"
    stated = [tuple(sorted(p.strip(" `.") for p in tier.split(","))) for tier in match.group(1).split("->")]
    assert stated == [tuple(sorted(t)) for t in TIERS]


@pytest.mark.parametrize("name,home", [("ClassifierRun", "classification"), ("run_squad", "squad")])
def test_old_workflow_names_still_resolve(name, home):
    import kzoo.tasks
    import kzoo.training

    with pytest.warns(DeprecationWarning, match=f"kzoo.tasks.{name}"):
        assert getattr(kzoo.training, name) is getattr(kzoo.tasks, name)
