"""release/ is exactly what `nbgrader generate_assignment` makes from source/, and gives nothing away."""

from __future__ import annotations

import filecmp
import subprocess
import sys

import nbformat
import pytest

from conftest import ASSIGNMENT, REPO, copy_course

RELEASE = REPO / "release" / ASSIGNMENT
SOURCE = REPO / "source" / ASSIGNMENT


@pytest.fixture(scope="module")
def fresh_release(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("release") / "course", demo_class=False)
    nbgrader = [sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force"]
    env_path = f"{sys.executable.rsplit('/', 1)[0]}:/usr/bin:/bin"
    done = subprocess.run(nbgrader, cwd=course, capture_output=True, text=True, env={"PATH": env_path, "HOME": str(course)})
    assert done.returncode == 0, done.stderr[-3000:]
    return course / "release" / ASSIGNMENT


def test_release_equals_a_fresh_generate_assignment(fresh_release):
    committed = sorted(p.name for p in RELEASE.iterdir())
    generated = sorted(p.name for p in fresh_release.iterdir())
    assert committed == generated
    for name in generated:
        if name.endswith(".ipynb"):
            assert nbformat.read(str(RELEASE / name), as_version=4) == nbformat.read(str(fresh_release / name), as_version=4), (
                f"release/{ASSIGNMENT}/{name} is stale: run `make release` and commit it"
            )
        else:
            assert filecmp.cmp(RELEASE / name, fresh_release / name, shallow=False), f"release/{ASSIGNMENT}/{name} is stale"


@pytest.mark.parametrize("path", sorted(RELEASE.glob("*.ipynb")), ids=lambda p: p.stem)
def test_release_holds_no_solutions_and_no_hidden_tests(path):
    release = nbformat.read(str(path), as_version=4)
    source = nbformat.read(str(SOURCE / path.name), as_version=4)
    text = "\n".join(c.source for c in release.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    released = {c.metadata.nbgrader["grade_id"]: c.source for c in release.cells if "nbgrader" in c.metadata}
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            before, rest = cell.source.split("### BEGIN SOLUTION")
            solution, after = rest.split("### END SOLUTION")
            outside = {line.strip() for line in (before + after).splitlines()}
            for line in filter(str.strip, solution.splitlines()):
                if line.strip() not in outside:
                    assert line.strip() not in released[meta["grade_id"]], f"{meta['grade_id']}: solution line {line.strip()!r} released"
            assert "raise NotImplementedError()" in released[meta["grade_id"]]
        if "### BEGIN HIDDEN TESTS" in cell.source:
            before, rest = cell.source.split("### BEGIN HIDDEN TESTS")
            hidden, after = rest.split("### END HIDDEN TESTS")
            visible = {line.strip() for line in (before + after).splitlines()}
            for line in filter(str.strip, hidden.splitlines()):
                if line.strip() not in visible and len(line.strip()) > 12:
                    assert line.strip() not in released[meta["grade_id"]], f"{meta['grade_id']}: hidden line {line.strip()!r} released"
