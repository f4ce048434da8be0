"""pytest plugin: the visible tests of the course's notebooks as pytest items, opt-in.

``nbgrader validate`` prints a wall of text and exits 0 even when tests fail (jupyter/nbgrader#1908),
so a student runs, in the folder of the notebooks::

    pytest --selfcheck                          # or: pytest --selfcheck 02_creating_tensors.ipynb

Nothing is collected without ``--selfcheck`` (or ``selfcheck = true`` in the ini file), so other
projects' pytest runs are unaffected. With it, each notebook of the course (``course.json``, read from
the release notebooks) runs once, top to bottom, in a fresh ``python3`` kernel of the Python running
pytest, started in the notebook's folder; ``checks.py`` is found there or in a folder above. Each
exercise is one item, ``Exercise 3``, reported with its heading and points:

- a failing test cell fails its item with the exception line of the cell; the run goes on;
- any other cell that raises (the setup, an answer that does not parse, a lesson cell) stops the run,
  like *Restart & Run All*: the later items fail as "not reached", naming that cell by its heading;
- a cell still running after ``--selfcheck-timeout`` seconds (default 60; 0: none) fails and stops the run;
- an exercise whose test cell is missing fails; a notebook that cannot be read fails every item;
- Jupyter's copies (``...-Copy1.ipynb``) and notebooks of no exercise of the course are skipped with a
  note, never a collection error;
- the summary gives the visible points earned, per notebook and in total.

Only the cells of the student's notebook run: it has no hidden tests, and nothing here holds them.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from .course import Course, is_test_cell, load_packaged, read_release
from .run import run_notebook

_COPY = re.compile(r"^(?P<base>.+?)(?:-Copy\d+| \(\d+\)|-checkpoint)$")
_NOTES = pytest.StashKey[list]()
_COURSE = pytest.StashKey[Course]()


def pytest_addoption(parser):
    group = parser.getgroup("selfcheck", "course notebooks (torchsteps-selfcheck)")
    group.addoption("--selfcheck", action="store_true", default=None,
                    help="check the course's notebooks (collect .ipynb files); off by default")
    group.addoption("--selfcheck-release", default=None, metavar="DIR",
                    help="read the course from the release notebooks in DIR (default: the course built into this package)")
    group.addoption("--selfcheck-timeout", type=int, default=None, metavar="SECONDS",
                    help="time limit per notebook cell (default: ini selfcheck_timeout, 60; 0: none)")
    parser.addini("selfcheck", "check the course's notebooks (as --selfcheck)", type="bool", default=False)
    parser.addini("selfcheck_timeout", "time limit per notebook cell, in seconds", default="60")


def _enabled(config) -> bool:
    return bool(config.getoption("selfcheck") or config.getini("selfcheck"))


def pytest_configure(config):
    config.stash[_NOTES] = []


def course_of(config) -> Course:
    """The course this plugin checks: the one built into the package by the release step (or --selfcheck-release)."""
    if _COURSE not in config.stash:
        release = config.getoption("selfcheck_release")
        if release:
            try:
                course = read_release(Path(release).expanduser().resolve())
            except (OSError, ValueError) as err:
                raise pytest.UsageError(f"--selfcheck-release {release}: {err}") from None
        else:
            course = load_packaged()
        if course is None:
            raise pytest.UsageError(
                "torchsteps-selfcheck has no course.json: install the wheel handed out with the notebooks "
                "(the release step builds it), not the bare sources"
            )
        config.stash[_COURSE] = course
    return config.stash[_COURSE]


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix != ".ipynb" or not _enabled(parent.config):
        return None
    if ".ipynb_checkpoints" in file_path.parts:
        return None
    return NotebookFile.from_parent(parent, path=file_path)


def _skip(collector, note: str):
    collector.config.stash[_NOTES].append(f"{collector.path.name}: {note}")
    pytest.skip(note)


def find_checks(folder: Path) -> Path | None:
    """The folder of the ``checks.py`` nearest to ``folder``: itself or a folder above it."""
    for candidate in (folder, *folder.parents):
        if (candidate / "checks.py").is_file():
            return candidate
    return None


class NotebookFile(pytest.File):
    """One notebook: one item per exercise of its course notebook; the notebook runs once, on first use."""

    def collect(self):
        course = course_of(self.config)
        stem = self.path.stem
        copy = _COPY.match(stem)
        if stem not in course.notebooks:
            if copy and copy["base"] in course.notebooks:
                _skip(self, f"a copy of {copy['base']}.ipynb, not checked: the course grades {copy['base']}.ipynb only "
                            "(work in that file, or save this one under its name)")
            try:
                nb = nbformat.read(str(self.path), as_version=4)
                owner = course.owner(c.metadata.nbgrader.get("grade_id") for c in nb.cells if is_test_cell(c))
            except Exception:  # unreadable, or not a notebook: certainly not one of the course's
                owner = None
            if owner:
                _skip(self, f"holds the exercises of {owner}.ipynb, not checked: the course grades {owner}.ipynb "
                            f"only (save your work under that name)")
            _skip(self, "not a notebook of this course, not checked "
                        f"(the course's notebooks: {', '.join(n + '.ipynb' for n in course.notebooks)})")
        self.exercises = course.notebooks[stem]
        self.problem = None  # why no item can pass, found before any kernel starts
        self.cells = {}  # grade_id -> index of its test cell
        try:
            self.notebook = nbformat.read(str(self.path), as_version=4)
        except Exception as err:  # invalid JSON, not a notebook, unreadable file
            self.problem = f"{self.path.name} cannot be read as a notebook ({err}); the course cannot grade it either"
        else:
            for index, cell in enumerate(self.notebook.cells):
                if is_test_cell(cell):
                    self.cells.setdefault(cell.metadata.nbgrader.get("grade_id"), index)
            self.checks = find_checks(self.path.parent)
            if self.checks is None:
                self.problem = ("checks.py not found beside the notebook or in a folder above it: "
                                "keep the checks.py of the released assignment next to the notebooks")
        owner = course.owner(self.cells)
        self._failures = None
        for exercise in self.exercises:
            yield NotebookItem.from_parent(self, name=exercise.number.replace(" ", "_").lower(),
                                           exercise=exercise, missing=self._missing(exercise, owner))

    def _missing(self, exercise, owner) -> str | None:
        """Why this exercise cannot be checked in this file, or None."""
        if self.problem or exercise.grade_id in self.cells:
            return self.problem
        if owner and owner != self.path.stem:
            return (f"{self.path.name} holds the exercises of {owner}.ipynb, not its own: "
                    f"the course grades each notebook by its file name")
        return (f"its test cell is missing from {self.path.name} "
                "(the course puts it back and runs it when grading; restore it from the released notebook)")

    def failures(self) -> dict[int, tuple[str, str]]:
        """``{cell index: (failure message, printed output)}`` of the failing test cells (run once)."""
        if self._failures is None:
            timeout = self.config.getoption("selfcheck_timeout")
            if timeout is None:
                timeout = int(self.config.getini("selfcheck_timeout"))
            import_path = None if self.checks == self.path.parent else self.checks
            self._failures = run_notebook(self.notebook, self.path.parent, timeout, set(self.cells.values()), import_path)
        return self._failures


class CellFailed(Exception):
    """A test cell raised, was not reached, or is missing; the message says which exception, or why."""


def _points(value: float) -> str:
    return f"{value:g} point" + ("" if value == 1 else "s")


class NotebookItem(pytest.Item):
    """One exercise (its test cell); passes when the cell ran without raising."""

    def __init__(self, *, exercise, missing: str | None, **kwargs):
        super().__init__(**kwargs)
        self.exercise = exercise
        self.missing = missing
        self.user_properties.append(("points", exercise.points))
        self.user_properties.append(("exercise", exercise.title))

    def runtest(self):
        if self.missing:
            raise CellFailed(f"{self.exercise.title}: {self.missing}")
        failure = self.parent.failures().get(self.parent.cells[self.exercise.grade_id])
        if failure is not None:
            message, printed = failure
            if printed:
                self.add_report_section("call", "cell output", printed)
            raise CellFailed(f"{self.exercise.title}: {message}")

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, CellFailed):
            return str(excinfo.value)  # the cell's exception, not a traceback through pytest or nbclient
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"{self.exercise.title} ({_points(self.exercise.points)})"


def _item_props(report) -> dict | None:
    """The properties of an exercise item's report (its call phase), None for any other report."""
    if report.when != "call" or not report.nodeid.split("::")[0].endswith(".ipynb"):
        return None
    props = dict(getattr(report, "user_properties", ()))
    return props if "points" in props else None


def pytest_report_teststatus(report, config):
    """``PASSED  Exercise 3: an independent copy (2 points)`` in verbose mode."""
    props = _item_props(report)
    if props is None or report.outcome not in ("passed", "failed"):
        return None
    letter, word = (".", "PASSED") if report.passed else ("F", "FAILED")
    verbose = f"{word}  {props['exercise']} ({_points(props['points'])})"
    return report.outcome, letter, (verbose, {"green": report.passed, "red": report.failed})


def pytest_terminal_summary(terminalreporter, config):
    """The skipped notebooks, with why; then ``visible points: 7 / 12`` per notebook and in total."""
    notes = config.stash.get(_NOTES, [])
    if notes:
        terminalreporter.write_sep("-", "notebooks not checked")
        for note in notes:
            terminalreporter.write_line(note)
    earned: dict[str, float] = {}
    available: dict[str, float] = {}
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            props = _item_props(report)
            if props is None:
                continue
            notebook = report.nodeid.split("::")[0]
            available[notebook] = available.get(notebook, 0.0) + props["points"]
            earned[notebook] = earned.get(notebook, 0.0) + (props["points"] if outcome == "passed" else 0.0)
    if not available:
        return
    terminalreporter.write_sep("=", "visible points")
    for notebook in sorted(available):
        terminalreporter.write_line(f"{notebook}: {earned[notebook]:g} / {available[notebook]:g}")
    total, out_of = sum(earned.values()), sum(available.values())
    terminalreporter.write_line(f"visible points: {total:g} / {out_of:g} (hidden tests run when the course grades your work)",
                                bold=True, green=total == out_of, red=total < out_of)
