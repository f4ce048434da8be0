"""pytest plugin: the autograded test cells of nbgrader notebooks as pytest items.

``nbgrader validate`` prints a wall of text and exits 0 even when tests fail (jupyter/nbgrader#1908),
so neither a student's script nor CI can rely on it. This plugin is installed with the package
(entry point ``pytest11``, name ``torchsteps``), so a student who has the released notebooks and
``pip install``-ed the package can run, in any terminal::

    pytest 01_numpy_and_pytorch.ipynb      # or a folder of notebooks

Each notebook runs once, top to bottom, in a fresh ``python3`` kernel of the Python that runs
pytest, started in the notebook's folder (so ``checks.py`` beside it imports). Every test cell
(nbgrader ``grade=True, solution=False``) is one item named by its grade_id, worth its points:

- a failing test cell fails its item with the cell's exception line; the run goes on;
- any other cell that raises (setup, an answer with a syntax error, a lesson cell) stops the run,
  like *Restart & Run All*: the later items fail as "not reached", naming that cell;
- a cell that runs longer than ``--nb-timeout`` seconds (ini ``nb_timeout``, default 60, 0 = no
  limit) fails its item and stops the run;
- a notebook that cannot be read, has no test cells, or whose test cells are those of no notebook of
  this course (``torchsteps.authoring.catalogue``) is a collection error; ``--nb-any`` accepts any nbgrader
  notebook with test cells;
- the summary gives the visible points earned, per notebook and in total.

Only the cells of the given notebook run: a student's copy has no hidden tests, and nothing here
looks for them. The package's own test suite runs the instructor notebooks through this plugin.
``-p no:torchsteps`` turns the plugin off.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from traitlets import default

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_FAILING_LINE = re.compile(r"^-+> *(\d+) (.*)$", re.MULTILINE)


def pytest_addoption(parser):
    group = parser.getgroup("torchsteps", "nbgrader notebooks (torchsteps)")
    group.addoption("--nb-timeout", type=int, default=None, metavar="SECONDS",
                    help="time limit per notebook cell (default: ini nb_timeout, 60; 0: none)")
    group.addoption("--nb-any", action="store_true", default=None,
                    help="run any nbgrader notebook, not only the notebooks of this course")
    parser.addini("nb_timeout", "time limit per notebook cell, in seconds", default="60")
    parser.addini("nb_any", "run any nbgrader notebook, not only this course's", type="bool", default=False)


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix == ".ipynb" and ".ipynb_checkpoints" not in file_path.parts:
        return NotebookFile.from_parent(parent, path=file_path)
    return None


def _is_test_cell(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def _label(index: int, cell) -> str:
    """``cell 12 (test_x)``: position in the notebook, then grade_id or first line."""
    name = cell.metadata.get("nbgrader", {}).get("grade_id")
    if not name:
        first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
        name = first if len(first) <= 60 else first[:57] + "..."
    return f"cell {index + 1} ({name})"


def _points(value) -> str:
    return f"{float(value):g}"


class NotebookFile(pytest.File):
    """One notebook: collects its test cells, runs the whole notebook once on first use."""

    def collect(self):
        try:
            self.notebook = nbformat.read(str(self.path), as_version=4)
        except Exception as err:  # invalid JSON, not a notebook, unreadable file
            raise self.CollectError(f"{self.path.name} cannot be read as a notebook: {err}") from err
        tests = [(i, c) for i, c in enumerate(self.notebook.cells) if _is_test_cell(c)]
        if not tests:
            raise self.CollectError(
                f"{self.path.name} has no nbgrader test cells (code cells with grade=True, solution=False): "
                "nothing to check"
            )
        if not (self.config.getoption("nb_any") or self.config.getini("nb_any")):
            self._check_course([c.metadata.nbgrader.get("grade_id") for _, c in tests])
        self._tests = {i for i, _ in tests}
        self._failures = None
        for index, cell in tests:
            meta = cell.metadata.nbgrader
            yield NotebookItem.from_parent(self, name=meta.get("grade_id") or f"cell_{index + 1}",
                                           index=index, points=float(meta.get("points", 0)))

    def _check_course(self, grade_ids: list[str]) -> None:
        """Reject a notebook whose test cells are not those of the course notebook of the same name."""
        from torchsteps.authoring.catalogue import by_notebook

        course = {name: {t for e in c.exercises for t in e.test_ids} for name, c in by_notebook().items()}
        overlap = {name: len(tests & set(grade_ids)) for name, tests in course.items()}
        if overlap.get(self.path.stem):
            return
        best = max(overlap, key=overlap.get, default=None)
        if best is not None and overlap[best]:
            raise self.CollectError(
                f"{self.path.name} holds the test cells of {best}.ipynb of this course: nbgrader collects "
                f"and grades notebooks by file name, so work in (or save this as) {best}.ipynb"
            )
        raise self.CollectError(
            f"{self.path.name} is not a notebook of this course: its test cells ({', '.join(grade_ids)}) "
            f"belong to none of {', '.join(n + '.ipynb' for n in sorted(course))}. "
            "Use --nb-any to run the test cells of a notebook from another course."
        )

    def failures(self) -> dict[int, tuple[str, str]]:
        """``{cell index: (failure message, printed output)}`` of the failing test cells (run once)."""
        if self._failures is None:
            timeout = self.config.getoption("nb_timeout")
            if timeout is None:
                timeout = int(self.config.getini("nb_timeout"))
            self._failures = run_notebook(self.notebook, self.path.parent, timeout, self._tests)
        return self._failures


class CellFailed(Exception):
    """A test cell raised, or was not reached; the message says which exception, or why."""


class NotebookItem(pytest.Item):
    """One test cell, named by its grade_id; passes when the cell ran without raising."""

    def __init__(self, *, index: int, points: float, **kwargs):
        super().__init__(**kwargs)
        self.index = index
        self.points = points
        self.user_properties.append(("points", points))

    def runtest(self):
        failure = self.parent.failures().get(self.index)
        if failure is not None:
            message, printed = failure
            if printed:
                self.add_report_section("call", "cell output", printed)
            raise CellFailed(message)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, CellFailed):
            return str(excinfo.value)  # the cell's exception, not a traceback through pytest or nbclient
        return super().repr_failure(excinfo)

    def reportinfo(self):
        plural = "" if self.points == 1 else "s"
        return self.path, None, f"{self.name} ({_points(self.points)} point{plural})"


class _ThisPythonKernel(AsyncKernelManager):
    """The ``python3`` kernel of the Python running pytest, whatever kernelspecs the user installed."""

    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self):
        return KernelSpecManager(kernel_dirs=[])


def _error(cell) -> str | None:
    """``Ename: message`` of the exception a cell raised, or None."""
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            value = _ANSI.sub("", out.evalue or "").strip()
            return f"{out.ename}: {value}" if value else out.ename
    return None


def _failing_line(cell) -> str:
    """``line 3: check_tensor(...)``: where in the cell itself the exception came from."""
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            for frame in out.traceback:
                frame = _ANSI.sub("", frame)
                match = _FAILING_LINE.search(frame) if frame.lstrip().startswith("Cell In[") else None
                if match:
                    return f"line {match[1]}: {match[2].strip()}"
    return ""


def _printed(cell) -> str:
    return "".join(out.text for out in cell.get("outputs", []) if out.output_type == "stream")


def run_notebook(nb, folder: Path, timeout: int, tests: set[int]) -> dict[int, tuple[str, str]]:
    """Execute ``nb`` in a fresh kernel in ``folder``; the failures of the test cells at ``tests``.

    Returns ``{cell index: (message, printed output)}``; a test cell that is absent passed.
    """
    nb = nbformat.from_dict(nb)  # a copy: the collected notebook keeps no outputs
    client = NotebookClient(
        nb, timeout=timeout or None, kernel_name="python3", kernel_manager_class=_ThisPythonKernel,
        allow_errors=True, interrupt_on_timeout=False, shutdown_kernel="immediate",
        extra_arguments=["--IPKernelApp.log_level=ERROR"], resources={"metadata": {"path": str(folder)}},
    )
    failures: dict[int, tuple[str, str]] = {}
    ran: set[int] = set()
    stopped = None  # why the cells after the last one that ran did not run
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                try:
                    client.execute_cell(cell, index)
                except CellTimeoutError:
                    problem = f"timed out: still running after {timeout} s (an endless loop? see --nb-timeout)"
                    stopped = f"not reached: {_label(index, cell)} {problem}"
                except DeadKernelError:
                    problem = "the kernel died while running this cell"
                    stopped = f"not reached: {_label(index, cell)}: the kernel died"
                else:
                    problem = _error(cell)
                    if problem and index not in tests:
                        stopped = f"not reached: {_label(index, cell)} raised {problem}"
                ran.add(index)
                if problem and index in tests:
                    where = _failing_line(cell)
                    failures[index] = (problem + (f"\n  at {where}" if where else ""), _printed(cell))
                if stopped:
                    break
    except Exception as err:  # the kernel could not start, or failed between cells
        stopped = stopped or f"the notebook could not be run: {type(err).__name__}: {err}"
    for index in sorted(tests - ran):
        failures[index] = (stopped or "not reached", "")
    return failures


def _item_points(report) -> float | None:
    """The points of a test-cell item's report (its call phase), None for any other report."""
    if report.when != "call" or not report.nodeid.split("::")[0].endswith(".ipynb"):
        return None
    return dict(getattr(report, "user_properties", ())).get("points")


def pytest_report_teststatus(report, config):
    """``PASSED (2 points)`` in verbose mode, for the items of test cells."""
    points = _item_points(report)
    if points is None or report.outcome not in ("passed", "failed"):
        return None
    letter, word = (".", "PASSED") if report.passed else ("F", "FAILED")
    plural = "" if points == 1 else "s"
    return report.outcome, letter, (f"{word} ({_points(points)} point{plural})", {"green": report.passed, "red": report.failed})


def pytest_terminal_summary(terminalreporter):
    """``visible points: 7 / 12``: the points of the test cells that passed, per notebook and in total."""
    earned: dict[str, float] = {}
    available: dict[str, float] = {}
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            points = _item_points(report)
            if points is None:
                continue
            notebook = report.nodeid.split("::")[0].removesuffix(".ipynb")
            available[notebook] = available.get(notebook, 0.0) + points
            earned[notebook] = earned.get(notebook, 0.0) + (points if outcome == "passed" else 0.0)
    if not available:
        return
    terminalreporter.write_sep("=", "visible points")
    for notebook in sorted(available):
        terminalreporter.write_line(f"notebook {notebook}: {_points(earned[notebook])} / {_points(available[notebook])}")
    total, out_of = sum(earned.values()), sum(available.values())
    terminalreporter.write_line(f"visible points: {_points(total)} / {_points(out_of)}", bold=True,
                                green=total == out_of, red=total < out_of)
