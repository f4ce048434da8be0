"""The students' self-check: the separate distribution selfcheck/ (`pytest --selfcheck`).

`nbgrader validate` exits 0 even when tests fail (jupyter/nbgrader#1908); the plugin reports each
exercise as a pytest item and exits non-zero on any failure. The in-process runs use the development
install with `--selfcheck-release` (the course read from release/ at run time); the fresh-venv test
uses the wheel the release step builds, exactly as a student installs it. Each notebook run starts a
kernel and imports torch, so the cases are grouped: one pytest run per kind of outcome.
"""

from __future__ import annotations

import ast
import keyword
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest

from conftest import ASSIGNMENT, REPO
from torchsteps.authoring.catalogue import by_notebook
from torchsteps.authoring.demo_submissions import instructor_answers
from torchsteps.authoring.submissions import fill_solutions
from torchsteps_selfcheck.course import read_release

pytest_plugins = ["pytester"]

SOURCE = REPO / "source" / ASSIGNMENT
RELEASE = REPO / "release" / ASSIGNMENT
SELFCHECK = REPO / "selfcheck"
NOTEBOOK = "01_numpy_and_pytorch"
COURSE = ["--selfcheck", f"--selfcheck-release={RELEASE}"]


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def exercises(name: str = NOTEBOOK):
    """The exercises of a course notebook as the plugin sees them: number, title, points."""
    return read_release(RELEASE).notebooks[name]


def put(folder: Path, nb, name: str = NOTEBOOK, checks: bool = True) -> Path:
    """Write ``nb`` as ``folder/<name>.ipynb``, with the release's checks.py beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    if checks:
        shutil.copy(RELEASE / "checks.py", folder / "checks.py")
    nbformat.write(nb, str(folder / f"{name}.ipynb"))
    return folder / f"{name}.ipynb"


@pytest.fixture(scope="module")
def student():
    """The release notebook and the instructor's answers for it."""
    return read(RELEASE / f"{NOTEBOOK}.ipynb"), instructor_answers(read(SOURCE / f"{NOTEBOOK}.ipynb"))


# --- fast tier: no kernel starts ----------------------------------------------------------------------


def test_the_course_is_read_from_the_release_notebooks():
    """Every test cell of every release notebook, with its points and the exercise heading above it."""
    course = read_release(RELEASE)
    assert list(course.notebooks) == sorted(p.stem for p in RELEASE.glob("*.ipynb"))
    for name, found in course.notebooks.items():
        nb = read(RELEASE / f"{name}.ipynb")
        cells = [c.metadata.nbgrader for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
                 and not c.metadata.nbgrader.get("solution")]
        assert [(e.grade_id, e.points) for e in found] == [(m["grade_id"], float(m["points"])) for m in cells]
        # numbered as the student reads them: Exercise 1, 2, ... in order, no markdown, no "(n points)"
        assert [e.number for e in found] == [f"Exercise {i}" for i in range(1, len(found) + 1)], found
        assert all("`" not in e.title and "point" not in e.title for e in found), found
    assert exercises()[2].title == "Exercise 3: an independent copy"


def test_the_distribution_is_small_and_runs_on_the_pythons_torch_supports():
    """Only pytest, nbclient and ipykernel are required; the code parses as Python 3.10 and imports
    nothing but the standard library and those (with nbclient's own nbformat, jupyter_client, traitlets)."""
    pyproject = (SELFCHECK / "pyproject.toml").read_text(encoding="utf-8")
    assert 'requires-python = ">=3.10"' in pyproject
    assert 'dependencies = ["pytest>=7.4", "nbclient>=0.8", "ipykernel>=6.20"]' in pyproject
    allowed = set(sys.stdlib_module_names) | {"pytest", "nbclient", "nbformat", "jupyter_client", "traitlets", "torchsteps_selfcheck"}
    for path in sorted((SELFCHECK / "src").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), feature_version=(3, 10))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            assert {n.split(".")[0] for n in names} <= allowed, f"{path.name} imports {names}"
    # the instructor package no longer ships a pytest plugin
    main = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert "pytest11" not in main and not (REPO / "torchsteps" / "pytest_plugin.py").exists()


def test_nothing_is_collected_without_the_opt_in(pytester):
    """Another project's pytest run that meets notebooks is unaffected; `selfcheck = true` in the ini opts in."""
    shutil.copy(RELEASE / f"{NOTEBOOK}.ipynb", pytester.path / f"{NOTEBOOK}.ipynb")
    (pytester.path / "broken.ipynb").write_text("{ not JSON", encoding="utf-8")
    pytester.makepyfile(test_other="def test_other():\n    assert True\n")
    result = pytester.runpytest(f"--selfcheck-release={RELEASE}")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nselfcheck = true\n")
    collected = pytester.runpytest("--collect-only", "-q", f"--selfcheck-release={RELEASE}", f"{NOTEBOOK}.ipynb")
    collected.stdout.fnmatch_lines([f"{NOTEBOOK}.ipynb::exercise_{i}" for i in range(1, len(exercises()) + 1)])


def test_copies_and_unrelated_notebooks_are_skipped_with_a_note(pytester):
    """No kernel starts and no collection error: each notebook that is not checked is named with why."""
    shutil.copy(RELEASE / f"{NOTEBOOK}.ipynb", pytester.path / f"{NOTEBOOK}-Copy1.ipynb")
    shutil.copy(RELEASE / "02_creating_tensors.ipynb", pytester.path / "my_work.ipynb")
    put(pytester.path, nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")]), name="scratch")
    (pytester.path / "broken.ipynb").write_text("{ this is not JSON", encoding="utf-8")
    (pytester.path / ".ipynb_checkpoints").mkdir()
    shutil.copy(RELEASE / f"{NOTEBOOK}.ipynb", pytester.path / ".ipynb_checkpoints" / f"{NOTEBOOK}-checkpoint.ipynb")

    result = pytester.runpytest(*COURSE, ".")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED, out
    assert "ERROR" not in out and "Interrupted" not in out and "checkpoint" not in out
    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines_random([
        f"{NOTEBOOK}-Copy1.ipynb: a copy of {NOTEBOOK}.ipynb, not checked: the course grades {NOTEBOOK}.ipynb only*",
        "my_work.ipynb: holds the exercises of 02_creating_tensors.ipynb, not checked*save your work under that name*",
        "scratch.ipynb: not a notebook of this course, not checked*",
        "broken.ipynb: not a notebook of this course, not checked*",
    ])


def _checker_output(result) -> str:
    """The run's output up to pytest's short summary, which repeats each failure's message in full under
    ``CI=true`` (pytest truncates it elsewhere); messages are counted once, where the checker prints them."""
    return result.stdout.str().split(" short test summary info ", 1)[0]


def test_an_unreadable_course_notebook_or_missing_checks_fail_every_exercise(pytester):
    """Found before any kernel starts: every exercise fails with the reason, the run goes on."""
    (pytester.path / f"{NOTEBOOK}.ipynb").write_text("{ this is not JSON", encoding="utf-8")
    shutil.copy(RELEASE / "02_creating_tensors.ipynb", pytester.path / "02_creating_tensors.ipynb")  # no checks.py
    result = pytester.runpytest(*COURSE, "-v", ".")
    out = _checker_output(result)
    assert result.ret == 1, out
    result.assert_outcomes(failed=len(exercises()) + len(exercises("02_creating_tensors")))
    assert out.count(f"{NOTEBOOK}.ipynb cannot be read as a notebook") == len(exercises())
    assert out.count("checks.py not found beside the notebook or in a folder above it") == len(exercises("02_creating_tensors"))
    result.stdout.fnmatch_lines([f"{NOTEBOOK}.ipynb: 0 / *", "02_creating_tensors.ipynb: 0 / *"])


# --- kernels: one per notebook run ----------------------------------------------------------------------


def test_a_correct_notebook_in_a_subfolder_passes_exercise_by_exercise(pytester, student):
    """The notebook sits in work/, checks.py one folder up: it is found; one item per exercise, named as in the notebook."""
    nb, answers = student
    shutil.copy(RELEASE / "checks.py", pytester.path / "checks.py")
    put(pytester.path / "work", fill_solutions(nb, answers), checks=False)
    result = pytester.runpytest(*COURSE, "-v", "--junitxml=report.xml")
    found = exercises()
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=len(found))
    result.stdout.fnmatch_lines([
        f"work/{NOTEBOOK}.ipynb::exercise_{i + 1} PASSED  {e.title} ({e.points:g} point*)*" for i, e in enumerate(found)
    ])
    total = f"{sum(e.points for e in found):g}"
    result.stdout.fnmatch_lines([f"work/{NOTEBOOK}.ipynb: {total} / {total}", f"visible points: {total} / {total} *"])
    assert "grade_id" not in result.stdout.str() and "test_to_" not in result.stdout.str()
    # the points are item properties, so junitxml (CI) carries them
    xml = ET.parse(pytester.path / "report.xml")
    recorded = {case.get("name"): float(case.find("properties/property[@name='points']").get("value"))
                for case in xml.iter("testcase")}
    assert recorded == {f"exercise_{i + 1}": e.points for i, e in enumerate(found)}


def test_a_mistake_fails_its_exercise_and_an_error_stops_the_run(pytester, student):
    """One run, three notebooks: a catalogue mistake (and a deleted test cell), a lesson cell that raises,
    an answer that does not parse. Every message names the exercise or the heading the student sees."""
    nb, answers = student
    exercise = by_notebook()[NOTEBOOK].exercise("to_tensor_copy")
    found = exercises()
    mistake = fill_solutions(nb, dict(answers, to_tensor_copy=exercise.mistake("from-numpy").code))
    deleted = next(i for i, c in enumerate(mistake.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "test_grad_to_numpy")
    del mistake.cells[deleted]
    put(pytester.path / "mistake", mistake)
    raising = fill_solutions(nb, answers)
    second_test = [i for i, c in enumerate(raising.cells) if c.metadata.get("nbgrader", {}).get("grade")
                   and not c.metadata.nbgrader.get("solution")][1]
    raising.cells.insert(second_test + 1, nbformat.v4.new_code_cell("print('a lesson cell')\nraise ValueError('boom')"))
    put(pytester.path / "raises", raising)
    no_colon = "def to_numpy_shared(t)\n    return t.numpy()\n"
    put(pytester.path / "syntax", fill_solutions(nb, dict(answers, to_numpy_shared=no_colon)))

    result = pytester.runpytest(*COURSE, "-v", "mistake", "raises", "syntax")
    out = _checker_output(result)
    assert result.ret == 1, out
    # the mistake: exactly its exercise fails, with the check's message; the deleted test cell fails too
    for i, e in enumerate(found):
        verdict = "FAILED" if e.grade_id in exercise.test_ids + ("test_grad_to_numpy",) else "PASSED"
        result.stdout.fnmatch_lines([f"mistake/{NOTEBOOK}.ipynb::exercise_{i + 1} {verdict} *"])
    result.stdout.fnmatch_lines([
        "Exercise 3: an independent copy: AssertionError: to_tensor_copy(a): *shares memory*",
        "  at line *: check_shares_memory(*",
        f"Exercise 5: from a requires-grad tensor to NumPy: its test cell is missing from {NOTEBOOK}.ipynb*",
    ])
    # a lesson cell raising after the second exercise: the first two pass, the rest were not reached
    for i in range(len(found)):
        result.stdout.fnmatch_lines([f"raises/{NOTEBOOK}.ipynb::exercise_{i + 1} {'PASSED' if i < 2 else 'FAILED'} *"])
    stop = "not reached: the 3rd code cell under 'Exercise 2: a tensor view of an array' raised ValueError: boom"
    assert out.count(stop) == len(found) - 2, out
    # an answer cell with a syntax error stops the run at that cell, named by its heading
    syntax = "not reached: your answer under 'Exercise 1: a NumPy view of a tensor' raised SyntaxError: "
    assert out.count(syntax) == len(found), out
    # messages from the notebook, not tracebacks through pytest or nbclient, nor cell indices or grade_ids
    assert "Traceback" not in out and "nbclient" not in out and "\x1b[" not in out
    assert "cell 1" not in out and "test_to_tensor_copy" not in out
    earned = sum(e.points for e in found if e.grade_id not in ("test_to_tensor_copy", "test_grad_to_numpy"))
    result.stdout.fnmatch_lines([f"mistake/{NOTEBOOK}.ipynb: {earned:g} / *", f"syntax/{NOTEBOOK}.ipynb: 0 / *"])


def test_an_endless_loop_times_out(pytester, student):
    """An answer that never returns: its exercise times out, the later ones are not reached. (15 s: the
    setup cell's `import torch` must fit in the limit on a loaded machine; the default is 60 s.)"""
    nb, answers = student
    put(pytester.path, fill_solutions(nb, dict(answers, to_tensor_shared="def to_tensor_shared(a):\n    while True:\n        pass\n")))
    started = time.monotonic()
    result = pytester.runpytest(*COURSE, "--selfcheck-timeout", "15", f"{NOTEBOOK}.ipynb")
    elapsed = time.monotonic() - started
    assert result.ret == 1
    result.assert_outcomes(passed=1, failed=len(exercises()) - 1)
    result.stdout.fnmatch_lines([
        "Exercise 2: a tensor view of an array: timed out: still running after 15 s*",
        "Exercise 3: an independent copy: not reached: the test cell under 'Exercise 2: a tensor view of an array' timed out*",
        f"visible points: 1 / {sum(e.points for e in exercises()):g} *",
    ])
    assert elapsed < 60, f"{elapsed:.0f} s: the 15 s limit was not applied (the default is 60 s)"


def test_the_instructor_notebooks_pass_every_test_cell(pytester):
    """The one way of running test cells: the instructor notebooks (visible and hidden tests) through the plugin,
    in a subprocess, so the plugin comes from the installed entry point."""
    for path in SOURCE.iterdir():
        if path.suffix in (".ipynb", ".py"):
            shutil.copy(path, pytester.path / path.name)
    course = read_release(RELEASE).notebooks
    result = pytester.runpytest_subprocess(*COURSE, "-v", ".")
    assert result.ret == 0, result.stdout.str()[-5000:]
    result.assert_outcomes(passed=sum(len(found) for found in course.values()))
    assert "selfcheck" in result.stdout.str().split("plugins:", 1)[1].splitlines()[0]
    total = sum(e.points for found in course.values() for e in found)
    result.stdout.fnmatch_lines([f"{name}.ipynb: {sum(e.points for e in found):g} / {sum(e.points for e in found):g}"
                                 for name, found in course.items()])
    result.stdout.fnmatch_lines([f"visible points: {total:g} / {total:g} *"])


# --- what a student receives --------------------------------------------------------------------------


def _secret_lines() -> dict[str, str]:
    """``{line: where}``: every solution and hidden-test line of source/ (stripped, with a word in it) that
    nothing released shows: not the release notebooks, not checks.py (generic lines such as ``pass`` are in both).
    A line that is one bare keyword (``continue``, ``else:``) gives nothing away and is left out: the plugin's
    own code has such lines."""
    shown = {line.strip() for line in (RELEASE / "checks.py").read_text(encoding="utf-8").splitlines()}
    for path in RELEASE.glob("*.ipynb"):
        shown |= {line.strip() for c in read(path).cells for line in c.source.splitlines()}
    secret = {}
    for path in sorted(SOURCE.glob("*.ipynb")):
        for cell in read(path).cells:
            for begin, end in (("### BEGIN SOLUTION", "### END SOLUTION"), ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")):
                if begin in cell.source:
                    body = cell.source.split(begin, 1)[1].split(end, 1)[0]
                    for line in map(str.strip, body.splitlines()):
                        if any(ch.isalnum() for ch in line) and line not in shown and not keyword.iskeyword(line.rstrip(":")):
                            secret[line] = f"{path.name}: {cell.metadata.nbgrader['grade_id']}"
    return secret


def test_a_student_with_only_the_release_installs_the_checker_and_finds_no_answer_in_it(tmp_path, built_release, student):
    """Build the release (`python -m torchsteps release`, what `make release` and `make grade` run); a fresh
    virtual environment; the one documented install line run in the release folder; torch from
    `pip install torch==2.13.0` (the local wheel). The installed files hold no solution or hidden-test line,
    no torchsteps or nbgrader comes along, and `pytest --selfcheck` works before and after solving."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/bin:/bin"
    home = tmp_path / "student"
    shutil.copytree(built_release, home)
    wheels = sorted(p.name for p in home.glob("*.whl"))
    assert wheels == ["torchsteps_selfcheck-1.0.0-py3-none-any.whl"], wheels
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"pip install {wheels[0]}" in readme, "the README's student instructions must give the install line"

    venv = tmp_path / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True, env=env)
    site = next((venv / "lib").glob("python3*/site-packages"))
    size = lambda: sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    base = size()
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    started = time.monotonic()
    done = subprocess.run(pip + [wheels[0]], cwd=home, capture_output=True, text=True, env=env)
    checker_s, checker_mb = time.monotonic() - started, (size() - base) / 2**20
    assert done.returncode == 0, done.stderr[-3000:]
    started = time.monotonic()
    done = subprocess.run(pip + ["torch==2.13.0", "numpy==2.4.6"], cwd=home, capture_output=True, text=True, env=env)
    torch_s, torch_mb = time.monotonic() - started, (size() - base) / 2**20 - checker_mb
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"\nstudent install: checker {checker_mb:.1f} MiB in {checker_s:.0f} s (pytest, nbclient, ipykernel and "
          f"their dependencies); torch + numpy {torch_mb:.0f} MiB in {torch_s:.0f} s")

    installed = {p.name.lower() for p in site.iterdir()}
    assert not any(n.startswith(("torchsteps-", "torchsteps.", "torchsteps_1", "nbgrader", "jupyterlab", "hypothesis", "psycopg"))
                   for n in installed), sorted(installed)
    files = [p for p in site.rglob("*") if p.is_file() and "torchsteps_selfcheck" in str(p.relative_to(site)) and p.suffix != ".pyc"]
    assert any(p.name == "course.json" for p in files) and any(p.name == "plugin.py" for p in files)
    secret = _secret_lines()
    assert len(secret) > 100, "the source notebooks' solutions and hidden tests were not found"
    instructor = {line.strip() for c in read(SOURCE / f"{NOTEBOOK}.ipynb").cells for line in c.source.splitlines()}
    assert len(set(secret) & instructor) > 20, "the search would not find the instructor's notebook itself"
    for path in files:
        lines = {line.strip() for line in path.read_text(encoding="utf-8").splitlines()}
        lines |= {item.strip() for line in lines for item in line.split("\\n")}  # lines inside JSON strings
        leaked = {line: where for line, where in secret.items() if line in lines}
        assert not leaked, f"{path.name} contains solution or hidden-test lines: {leaked}"

    nb, answers = student
    ids = [f"{NOTEBOOK}.ipynb::exercise_{i + 1}" for i in range(len(exercises()))]
    run = [str(venv / "bin" / "pytest"), "--selfcheck", "-v", f"{NOTEBOOK}.ipynb"]
    untouched = subprocess.run(run, cwd=home, capture_output=True, text=True, env=env)
    assert untouched.returncode == 1, untouched.stdout[-3000:]
    assert untouched.stdout.count("NotImplementedError") >= len(ids)
    assert all(f"{node} FAILED" in untouched.stdout for node in ids)
    put(home, fill_solutions(nb, answers), checks=False)
    solved = subprocess.run(run, cwd=home, capture_output=True, text=True, env=env)
    assert solved.returncode == 0, solved.stdout[-3000:]
    assert all(f"{node} PASSED" in solved.stdout for node in ids)
