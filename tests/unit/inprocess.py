"""Run a notebook's graded cells in this process, without a kernel or nbgrader (the fast test tier).

Only the setup cell, the answer cells and the test cells run (the lesson cells are skipped: the test
cells never use them), each in one shared namespace as in a kernel. Global library state a student's
cell can change (default dtype, global RNG, grad mode, warning filters, device-availability functions,
print options) is saved before and restored after each run, so runs cannot leak into each other.
The slow tier (tests/test_autograde.py) grades the same answers with real nbgrader and kernels.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import sys
import traceback
import warnings
from dataclasses import dataclass

import nbformat
import numpy as np
import torch

from conftest import ASSIGNMENT, REPO

SOURCE = REPO / "source" / ASSIGNMENT
if str(SOURCE) not in sys.path:
    sys.path.insert(0, str(SOURCE))


@dataclass(frozen=True)
class CellResult:
    grade_id: str
    passed: bool
    message: str  # the exception's last line when it failed
    stdout: str


def read_source(notebook: str) -> nbformat.NotebookNode:
    return nbformat.read(str(SOURCE / f"{notebook}.ipynb"), as_version=4)


@contextlib.contextmanager
def _restored_library_state():
    dtype = torch.get_default_dtype()
    rng = torch.random.get_rng_state()
    grad = torch.is_grad_enabled()
    np_print = np.get_printoptions()
    cuda, mps = torch.cuda.is_available, torch.backends.mps.is_available
    torch_mps = getattr(torch.mps, "is_available", None)
    with warnings.catch_warnings():
        try:
            yield
        finally:
            torch.set_default_dtype(dtype)
            torch.random.set_rng_state(rng)
            torch.set_grad_enabled(grad)
            torch.set_printoptions(profile="default")
            np.set_printoptions(**np_print)
            torch.cuda.is_available, torch.backends.mps.is_available = cuda, mps
            if torch_mps is not None:
                torch.mps.is_available = torch_mps


def run_graded_cells(nb: nbformat.NotebookNode, answers: dict[str, str], *, prelude: str = "",
                     only: set[str] | None = None) -> dict[str, CellResult]:
    """``{test grade_id: CellResult}`` after running ``nb`` with ``answers`` in its solution cells.

    ``prelude`` is student code run right after the setup cell (a habit such as ``from numpy import *``).
    ``only``: the test grade_ids to run (their answers still all run); default every test cell.
    """
    namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
    results: dict[str, CellResult] = {}
    with _restored_library_state():
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            meta = cell.metadata.get("nbgrader", {})
            grade_id = meta.get("grade_id")
            if grade_id == "setup":
                exec(compile(cell.source, "<setup>", "exec"), namespace)
                if prelude:
                    exec(compile(prelude, "<prelude>", "exec"), namespace)
            elif meta.get("solution"):
                exec(compile(answers.get(grade_id, cell.source), f"<{grade_id}>", "exec"), namespace)
            elif meta.get("grade") and (only is None or grade_id in only):
                out = io.StringIO()
                try:
                    with contextlib.redirect_stdout(out):
                        exec(compile(cell.source, f"<{grade_id}>", "exec"), namespace)
                except Exception as e:  # noqa: BLE001 - a failing test cell, as nbgrader would score it
                    message = "".join(traceback.format_exception_only(type(e), e)).strip()
                    results[grade_id] = CellResult(grade_id, False, message, out.getvalue())
                else:
                    results[grade_id] = CellResult(grade_id, True, "", out.getvalue())
    return results
