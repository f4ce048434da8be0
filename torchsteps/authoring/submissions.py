"""Build submissions: put code into a notebook's solution cells by grade_id.

Used by the test suite (mistake catalogue), the demo-class generator and the benchmark.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import nbformat

from ..constants import is_test_cell

__all__ = ["fill_solutions", "solution_ids", "grade_ids"]


def solution_ids(nb: nbformat.NotebookNode) -> list[str]:
    """grade_ids of the solution cells (answers a student writes), in notebook order."""
    return [
        c.metadata.nbgrader["grade_id"]
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    ]


def grade_ids(nb: nbformat.NotebookNode) -> list[str]:
    """grade_ids of the autograded test cells, in notebook order."""
    return [
        c.metadata.nbgrader["grade_id"]
        for c in nb.cells
        if is_test_cell(c)
    ]


def fill_solutions(nb: nbformat.NotebookNode, answers: Mapping[str, str]) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose solution cells named in ``answers`` hold the given source.

    Works on release notebooks (the student's view) and on instructor notebooks alike.

    Raises:
        KeyError: if a grade_id in ``answers`` names no solution cell of ``nb``.
    """
    nb = copy.deepcopy(nb)
    pending = dict(answers)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and meta.get("grade_id") in pending:
            cell.source = pending.pop(meta["grade_id"])
    if pending:
        raise KeyError(f"no solution cell with grade_id {sorted(pending)}")
    return nb
