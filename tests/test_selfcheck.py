"""The students' self-check: `pytest notebook.ipynb` through the plugin torchsteps.pytest_plugin.

`nbgrader validate` exits 0 even when tests fail (jupyter/nbgrader#1908); the plugin reports each
test cell as a pytest item and exits non-zero on any failure. Each notebook run starts a kernel and
imports torch, so the cases are grouped: one pytest run per kind of outcome.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest

from conftest import ASSIGNMENT, REPO, copy_course
from torchsteps.constants import is_test_cell
from torchsteps.authoring.catalogue import by_notebook
from torchsteps.authoring.demo_submissions import instructor_answers
from torchsteps.authoring.submissions import fill_solutions

pytest_plugins = ["pytester"]

SOURCE = REPO / "source" / ASSIGNMENT
NOTEBOOK = "01_numpy_and_pytorch"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """The student notebooks: release/ when it is generated, otherwise a fresh `nbgrader generate_assignment`."""
    committed = REPO / "release" / ASSIGNMENT
    if committed.is_dir():
        return committed
    course = copy_course(tmp_path_factory.mktemp("release") / "course", demo_class=False)
    shutil.rmtree(course / "release", ignore_errors=True)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(course)}
    done = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force"],
                          cwd=course, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return course / "release" / ASSIGNMENT


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def points(nb) -> dict[str, float]:
    """``{grade_id: points}`` of the test cells, in notebook order."""
    return {c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader["points"]) for c in nb.cells
            if is_test_cell(c)}


def put(folder: Path, nb, name: str = NOTEBOOK, checks: Path | None = None) -> Path:
    """Write ``nb`` as ``folder/<name>.ipynb``, with checks.py beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    if checks is not None:
        shutil.copy(checks, folder / "checks.py")
    nbformat.write(nb, str(folder / f"{name}.ipynb"))
    return folder / f"{name}.ipynb"


@pytest.fixture(scope="module")
def student(release):
    """The release notebook and the instructor's answers for it."""
    nb = read(release / f"{NOTEBOOK}.ipynb")
    return nb, instructor_answers(read(SOURCE / f"{NOTEBOOK}.ipynb"))


def test_a_correct_notebook_passes_item_by_item(pytester, release, student):
    nb, answers = student
    put(pytester.path, fill_solutions(nb, answers), checks=release / "checks.py")
    result = pytester.runpytest("-v", f"{NOTEBOOK}.ipynb", "--junitxml=report.xml")
    cells = points(nb)
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=len(cells))
    result.stdout.fnmatch_lines([f"{NOTEBOOK}.ipynb::{gid} PASSED ({p:g} point*)*" for gid, p in cells.items()])
    total = f"{sum(cells.values()):g}"
    result.stdout.fnmatch_lines([f"notebook {NOTEBOOK}: {total} / {total}", f"visible points: {total} / {total}"])
    # the points are item properties, so junitxml (CI) carries them
    xml = ET.parse(pytester.path / "report.xml")
    recorded = {case.get("name"): float(case.find("properties/property[@name='points']").get("value"))
                for case in xml.iter("testcase")}
    assert recorded == cells


def test_a_mistake_fails_its_item_and_an_error_stops_the_run(pytester, release, student):
    """One run, three notebooks: a catalogue mistake, a lesson cell that raises, an answer that does not parse."""
    nb, answers = student
    exercise = by_notebook()[NOTEBOOK].exercise("to_tensor_copy")
    checks = release / "checks.py"
    mistake = exercise.mistake("from-numpy").code
    put(pytester.path / "mistake", fill_solutions(nb, dict(answers, to_tensor_copy=mistake)), checks=checks)
    raising = fill_solutions(nb, answers)
    tests = [i for i, c in enumerate(raising.cells) if c.metadata.get("nbgrader", {}).get("grade")
             and not c.metadata.nbgrader.get("solution")]
    raising.cells.insert(tests[1] + 1, nbformat.v4.new_code_cell("print('a lesson cell')\nraise ValueError('boom')"))
    put(pytester.path / "raises", raising, checks=checks)
    no_colon = "def to_numpy_shared(t)\n    return t.numpy()\n"
    put(pytester.path / "syntax", fill_solutions(nb, dict(answers, to_numpy_shared=no_colon)), checks=checks)

    result = pytester.runpytest("-v", "mistake", "raises", "syntax")
    out = result.stdout.str()
    ids = list(points(nb))
    assert result.ret == 1, out
    # the mistake: exactly its item fails, with the message of the check in the test cell
    for gid in ids:
        verdict = "FAILED" if gid in exercise.test_ids else "PASSED"
        result.stdout.fnmatch_lines([f"mistake/{NOTEBOOK}.ipynb::{gid} {verdict} *"])
    result.stdout.fnmatch_lines(["AssertionError: to_tensor_copy(a): *shares memory*", "  at line *: check_shares_memory(*"])
    # a lesson cell raising after the second test: the first two pass, the rest were not reached
    cell = f"cell {tests[1] + 2} (print('a lesson cell'))"
    for gid in ids[:2]:
        result.stdout.fnmatch_lines([f"raises/{NOTEBOOK}.ipynb::{gid} PASSED *"])
    for gid in ids[2:]:
        result.stdout.fnmatch_lines([f"raises/{NOTEBOOK}.ipynb::{gid} FAILED *"])
    reasons = [line for line in out.splitlines() if line.startswith("not reached: ")]  # one per failed item
    assert reasons.count(f"not reached: {cell} raised ValueError: boom") == len(ids) - 2
    # an answer cell with a syntax error stops the run at that cell, named by its grade_id
    syntax = [r for r in reasons if "(to_numpy_shared) raised SyntaxError: " in r]
    assert len(syntax) == len(ids) and len(reasons) == 2 * len(ids) - 2, reasons
    # messages from the notebook, not tracebacks through pytest or nbclient
    assert "Traceback" not in out and "nbclient" not in out and "\x1b[" not in out
    earned = sum(points(nb).values()) - sum(points(nb)[t] for t in exercise.test_ids)
    result.stdout.fnmatch_lines([f"notebook mistake/{NOTEBOOK}: {earned:g} / *", "notebook syntax/*: 0 / *"])


def test_an_endless_loop_times_out(pytester):
    """A notebook of another course (--nb-any) whose second test cell never ends."""
    def test_cell(source, gid, pts):
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": gid, "points": pts,
                                     "locked": True, "schema_version": 3}
        return cell

    put(pytester.path, nbformat.v4.new_notebook(cells=[
        test_cell("assert 1 + 1 == 2", "test_ok", 1),
        nbformat.v4.new_code_cell("def spin():\n    while True:\n        pass"),
        test_cell("spin()", "test_spins", 2),
        test_cell("assert True", "test_after", 1),
    ]), name="other_course")
    started = time.monotonic()
    result = pytester.runpytest("--nb-any", "--nb-timeout", "3", "other_course.ipynb")
    elapsed = time.monotonic() - started
    assert result.ret == 1
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*test_spins (2 points)*", "timed out: still running after 3 s*",
        "*test_after (1 point)*", "not reached: cell 3 (test_spins) timed out*",
        "visible points: 1 / 4",
    ])
    assert elapsed < 60, f"{elapsed:.0f} s: the 3 s limit was not applied (the default is 60 s)"


def test_notebooks_that_cannot_be_checked_are_collection_errors(pytester, release):
    """No kernel starts: each notebook is refused at collection, with a message saying why."""
    (pytester.path / "broken.ipynb").write_text("{ this is not JSON", encoding="utf-8")
    shutil.copy(release / "02_creating_tensors.ipynb", pytester.path / f"{NOTEBOOK}.ipynb")  # wrong file name
    put(pytester.path, nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")]), name="scratch")
    other = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("assert True")])
    other.cells[0].metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "test_elsewhere", "points": 1}
    put(pytester.path, other, name="homework3")
    (pytester.path / ".ipynb_checkpoints").mkdir()
    shutil.copy(pytester.path / "broken.ipynb", pytester.path / ".ipynb_checkpoints" / "broken-checkpoint.ipynb")

    result = pytester.runpytest(".")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED, out
    assert "4 errors" in out
    result.stdout.fnmatch_lines_random([
        "broken.ipynb cannot be read as a notebook: Notebook does not appear to be JSON*",
        f"{NOTEBOOK}.ipynb holds the test cells of 02_creating_tensors.ipynb of this course*",
        "scratch.ipynb has no nbgrader test cells*",
        "homework3.ipynb is not a notebook of this course: its test cells (test_elsewhere) belong to none of "
        "01_numpy_and_pytorch.ipynb, *--nb-any*",
    ])
    assert "checkpoint" not in out


def test_the_instructor_notebooks_pass_every_test_cell(pytester):
    """The one way of running test cells: the instructor notebooks (visible and hidden tests) through the plugin,
    in a subprocess, so the plugin comes from the installed entry point."""
    for path in SOURCE.iterdir():
        if path.suffix in (".ipynb", ".py"):
            shutil.copy(path, pytester.path / path.name)
    notebooks = {p.stem: points(read(p)) for p in sorted(SOURCE.glob("*.ipynb"))}
    result = pytester.runpytest_subprocess("-v", ".")
    assert result.ret == 0, result.stdout.str()[-5000:]
    result.assert_outcomes(passed=sum(len(cells) for cells in notebooks.values()))
    assert "plugins: torchsteps" in result.stdout.str()
    total = sum(sum(cells.values()) for cells in notebooks.values())
    result.stdout.fnmatch_lines([f"notebook {name}: {sum(c.values()):g} / {sum(c.values()):g}"
                                 for name, c in notebooks.items()])
    result.stdout.fnmatch_lines([f"visible points: {total:g} / {total:g}"])


def test_student_fresh_venv(tmp_path, release, student):
    """A student with only release/ and `pip install` of the package: a fresh virtual environment,
    the package installed from a copy of its sources, the notebooks copied, plain `pytest` on one."""
    package = tmp_path / "package"
    package.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, package / name)
    shutil.copytree(REPO / "torchsteps", package / "torchsteps", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/bin:/bin"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True, env=env)
    pip = subprocess.run([venv / "bin" / "pip", "install", "--quiet", str(package)],
                         capture_output=True, text=True, env=env)
    assert pip.returncode == 0, pip.stderr[-3000:]

    home = tmp_path / "student"
    shutil.copytree(release, home, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    pytest_cmd = [venv / "bin" / "pytest", "-v", f"{NOTEBOOK}.ipynb"]
    nb, answers = student
    ids = list(points(nb))

    untouched = subprocess.run(pytest_cmd, cwd=home, capture_output=True, text=True, env=env)
    assert untouched.returncode == 1, untouched.stdout[-3000:]
    assert untouched.stdout.count("NotImplementedError") >= len(ids)
    assert all(f"{NOTEBOOK}.ipynb::{gid} FAILED" in untouched.stdout for gid in ids)

    put(home, fill_solutions(nb, answers))
    solved = subprocess.run(pytest_cmd, cwd=home, capture_output=True, text=True, env=env)
    assert solved.returncode == 0, solved.stdout[-3000:]
    assert all(f"{NOTEBOOK}.ipynb::{gid} PASSED" in solved.stdout for gid in ids)
