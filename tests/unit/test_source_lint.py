"""Metadata lint of the instructor notebooks in source/ (no kernel needed)."""

from __future__ import annotations

import ast
import re

import nbformat
import pytest

from conftest import ASSIGNMENT, REPO
from torchsteps.authoring.catalogue import by_notebook

SOURCE = REPO / "source" / ASSIGNMENT
NOTEBOOKS = sorted(SOURCE.glob("*.ipynb"))
MAGIC = re.compile(r"^\s*[%!]", re.MULTILINE)


def read(path):
    return nbformat.read(str(path), as_version=4)


def nbgrader_cells(nb):
    return [c for c in nb.cells if "nbgrader" in c.metadata]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3, f"expected the assignment's notebooks in {SOURCE}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
class TestSourceNotebook:
    def test_valid_nbformat_and_python3_kernel(self, path):
        nb = read(path)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3"
        assert nb.metadata.kernelspec.language == "python"

    def test_no_outputs_committed(self, path):
        nb = read(path)
        dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not dirty, f"cells {dirty} carry outputs or execution counts"

    def test_grade_ids_unique_and_points_positive(self, path):
        ids = [c.metadata.nbgrader["grade_id"] for c in nbgrader_cells(read(path))]
        assert len(ids) == len(set(ids)), f"duplicate grade_ids: {sorted(i for i in ids if ids.count(i) > 1)}"
        for cell in nbgrader_cells(read(path)):
            meta = cell.metadata.nbgrader
            if meta.get("grade"):
                assert meta.get("points", 0) > 0, f"{meta['grade_id']}: a graded cell needs positive points"
                assert cell.cell_type == "code" and not meta.get("solution"), f"{meta['grade_id']}: only autograded test cells are graded"
                assert meta.get("locked"), f"{meta['grade_id']}: test cells must be locked"

    def test_markers_balanced_and_in_the_right_cells(self, path):
        for cell in read(path).cells:
            meta = cell.metadata.get("nbgrader", {})
            src = cell.source
            begin_s, end_s = src.count("### BEGIN SOLUTION"), src.count("### END SOLUTION")
            begin_h, end_h = src.count("### BEGIN HIDDEN TESTS"), src.count("### END HIDDEN TESTS")
            where = meta.get("grade_id", cell.source[:40])
            assert begin_s == end_s <= 1, f"{where}: unbalanced SOLUTION markers"
            assert begin_h == end_h <= 1, f"{where}: unbalanced HIDDEN TESTS markers"
            if begin_s:
                assert meta.get("solution"), f"{where}: SOLUTION markers outside a solution cell"
                assert src.index("### BEGIN SOLUTION") < src.index("### END SOLUTION")
            if begin_h:
                assert meta.get("grade") and not meta.get("solution"), f"{where}: hidden tests outside a test cell"
                assert src.index("### BEGIN HIDDEN TESTS") < src.index("### END HIDDEN TESTS")

    def test_every_exercise_has_visible_and_hidden_tests(self, path):
        nb = read(path)
        catalogue = by_notebook()[path.stem]
        cells = {c.metadata.nbgrader["grade_id"]: c for c in nbgrader_cells(nb)}
        solution_ids = {g for g, c in cells.items() if c.metadata.nbgrader.get("solution")}
        assert solution_ids == {e.solution_id for e in catalogue.exercises}, "catalogue and notebook disagree on the exercises"
        assert len(solution_ids) >= 4, "each notebook has at least four graded exercises"
        for exercise in catalogue.exercises:
            assert "### BEGIN SOLUTION" in cells[exercise.solution_id].source
            for test_id in exercise.test_ids:
                src = cells[test_id].source
                visible = src.split("### BEGIN HIDDEN TESTS")[0]
                assert "### BEGIN HIDDEN TESTS" in src, f"{test_id}: no hidden tests"
                assert re.search(r"\b(check_\w+|assert)\b", visible), f"{test_id}: no visible checks"

    def test_code_parses_and_uses_no_magics_or_installs(self, path):
        for cell in read(path).cells:
            if cell.cell_type != "code":
                continue
            assert not MAGIC.search(cell.source), f"magic or shell command in: {cell.source[:60]!r}"
            assert "pip install" not in cell.source
            ast.parse(cell.source)

    def test_test_cells_end_with_a_statement(self, path):
        # nbgrader reads a numeric value of the last expression as partial credit.
        for cell in nbgrader_cells(read(path)):
            meta = cell.metadata.nbgrader
            if meta.get("grade"):
                body = ast.parse(cell.source).body
                assert body, f"{meta['grade_id']}: empty test cell"
                last = body[-1]
                assert not isinstance(last, ast.Expr) or isinstance(last.value, ast.Call), (
                    f"{meta['grade_id']}: ends with a bare expression, which nbgrader may read as partial credit"
                )
