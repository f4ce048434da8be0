"""Run a notebook once, top to bottom, in a fresh kernel; report what each test cell raised.

Like Jupyter's *Restart & Run All*: a cell that is not a test cell and raises stops the run, and the
test cells after it are "not reached". Cells are named as the student sees them: by the heading above
them ("your answer to Exercise 2: ...", "the 2nd code cell under '3. Changing shared data'"), never by
an index or a grade_id.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from traitlets import default

from .course import headings, is_test_cell

__all__ = ["describe_cells", "run_notebook"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_FAILING_LINE = re.compile(r"^-+> *(\d+) (.*)$", re.MULTILINE)
_POINTS_SUFFIX = re.compile(r"\s*\(\s*\d+(?:\.\d+)?\s+points?\s*\)\s*$")


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


def describe_cells(nb) -> dict[int, str]:
    """``{cell index: how the student finds it}`` for every code cell of ``nb``."""
    names, heading, count = {}, "", 0
    for index, cell in enumerate(nb.cells):
        found = headings(cell)
        if found:
            heading, count = _POINTS_SUFFIX.sub("", found[-1]), 0
            continue
        if cell.cell_type != "code":
            continue
        count += 1
        meta = cell.metadata.get("nbgrader", {})
        under = f"'{heading}'" if heading else "the top of the notebook"
        if is_test_cell(cell):
            names[index] = f"the test cell under {under}"
        elif meta.get("solution"):
            names[index] = f"your answer under {under}"
        else:
            names[index] = f"the {_ordinal(count)} code cell under {under}"
    return names


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


def run_notebook(nb, folder: Path, timeout: int, tests: set[int], import_path: Path | None = None) -> dict[int, tuple[str, str]]:
    """Execute a copy of ``nb`` in a fresh kernel started in ``folder``; the failures of the cells at ``tests``.

    ``import_path``: a folder put first on the kernel's ``PYTHONPATH`` (where ``checks.py`` is, when the
    notebook sits in a subfolder). ``timeout``: seconds per cell, 0 for none.
    Returns ``{cell index: (message, printed output)}``; a test cell that is absent passed.
    """
    nb = nbformat.from_dict(nb)  # a copy: the collected notebook keeps no outputs
    names = describe_cells(nb)
    client = NotebookClient(
        nb, timeout=timeout or None, kernel_name="python3", kernel_manager_class=_ThisPythonKernel,
        allow_errors=True, interrupt_on_timeout=False, shutdown_kernel="immediate",
        extra_arguments=["--IPKernelApp.log_level=ERROR"], resources={"metadata": {"path": str(folder)}},
    )
    env = dict(os.environ)
    if import_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(import_path), env.get("PYTHONPATH", "")]))
    failures: dict[int, tuple[str, str]] = {}
    ran: set[int] = set()
    stopped = None  # why the cells after the last one that ran did not run
    try:
        with client.setup_kernel(env=env):
            for index, cell in enumerate(nb.cells):
                try:
                    client.execute_cell(cell, index)
                except CellTimeoutError:
                    problem = f"timed out: still running after {timeout} s (an endless loop? see --selfcheck-timeout)"
                    stopped = f"not reached: {names[index]} timed out (still running after {timeout} s)"
                except DeadKernelError:
                    problem = "the kernel died while running this cell"
                    stopped = f"not reached: the kernel died in {names[index]}"
                else:
                    problem = _error(cell)
                    if problem and index not in tests:
                        stopped = f"not reached: {names[index]} raised {problem}"
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
