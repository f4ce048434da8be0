"""release/ is exactly what the release step makes from source/ (notebooks, checks.py, the self-check wheel), and gives nothing away."""

from __future__ import annotations

import filecmp
import zipfile

import nbformat
import pytest

from conftest import ASSIGNMENT, REPO

RELEASE = REPO / "release" / ASSIGNMENT
SOURCE = REPO / "source" / ASSIGNMENT


def _wheel_files(path):
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_release_equals_a_fresh_release(built_release):
    """`make release` = nbgrader generate_assignment + the self-check wheel (torchsteps.release); committed as made."""
    committed = sorted(p.name for p in RELEASE.iterdir())
    generated = sorted(p.name for p in built_release.iterdir())
    assert committed == generated
    for name in generated:
        if name.endswith(".ipynb"):
            assert nbformat.read(str(RELEASE / name), as_version=4) == nbformat.read(str(built_release / name), as_version=4), (
                f"release/{ASSIGNMENT}/{name} is stale: run `make release` and commit it"
            )
        elif name.endswith(".whl"):
            # the package's files and entry point; METADATA and RECORD also name the setuptools version that built it
            committed_files, built_files = (
                {k: v for k, v in _wheel_files(path).items() if not k.endswith(("/METADATA", "/RECORD", "/WHEEL"))}
                for path in (RELEASE / name, built_release / name)
            )
            assert committed_files == built_files, f"release/{ASSIGNMENT}/{name} is stale: run `make release` and commit it"
        else:
            assert filecmp.cmp(RELEASE / name, built_release / name, shallow=False), f"release/{ASSIGNMENT}/{name} is stale"


def test_the_self_check_wheel_knows_the_course_of_the_release_and_nothing_else(built_release):
    """course.json in the wheel is what the release notebooks say; only the plugin's modules come along."""
    from torchsteps_selfcheck.course import read_release

    wheel = _wheel_files(next(built_release.glob("torchsteps_selfcheck-*.whl")))
    assert wheel["torchsteps_selfcheck/course.json"].decode() == read_release(built_release).to_json()
    modules = sorted(n for n in wheel if not n.startswith("torchsteps_selfcheck-"))
    assert modules == [f"torchsteps_selfcheck/{m}" for m in ("__init__.py", "course.json", "course.py", "plugin.py", "run.py")]


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
