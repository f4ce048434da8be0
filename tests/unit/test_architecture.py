"""The package's architecture: layers (import-linter contracts in pyproject.toml) and no import cycle."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]


def test_layer_contracts_are_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is not installed in this environment (requirements.lock)"
    proc = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout or "0 broken" in proc.stdout, proc.stdout


@pytest.fixture(scope="module")
def graph():
    # Imports inside functions count: they are still a dependency, only a later one.
    return grimp.build_graph("torchsteps", include_external_packages=False)


def cycles_in(graph) -> list[tuple[str, str]]:
    """Pairs of modules that reach each other through imports (each pair once)."""
    return [
        (a, b) for a, b in itertools.combinations(sorted(graph.modules), 2)
        if graph.chain_exists(importer=a, imported=b) and graph.chain_exists(importer=b, imported=a)
    ]


def test_no_import_cycle_between_modules(graph):
    assert not cycles_in(graph), f"import cycles: {cycles_in(graph)}"


def test_the_cycle_check_finds_a_planted_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "planted"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "b.py").write_text("from . import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    planted = grimp.build_graph("planted", cache_dir=None)
    assert cycles_in(planted) == [("planted.a", "planted.b")]
