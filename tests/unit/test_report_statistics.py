"""The report's pure parts: statistics, message cleaning, data from export rows, rendering (no kernel)."""

from __future__ import annotations

import statistics

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from torchsteps.results.export import ExerciseColumn, GradeRow
from torchsteps.results.report import (
    NOT_SUBMITTED,
    NO_ERROR_OUTPUT,
    ReportData,
    collect_report_data,
    failure_message,
    item_rest_correlation,
    render_html,
)
from torchsteps.results.status import Status


def test_item_rest_correlation_is_pearson_and_undefined_without_variance():
    item, rest = [1.0, 0.0, 1.0, 0.0, 0.5], [7.0, 2.0, 5.0, 4.0, 3.0]
    assert item_rest_correlation(item, rest) == pytest.approx(statistics.correlation(item, rest))
    assert item_rest_correlation([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None  # everyone scored the same
    assert item_rest_correlation([0.0, 1.0, 1.0], [4.0, 4.0, 4.0]) is None  # no variance on the rest
    assert item_rest_correlation([1.0], [3.0]) is None
    assert item_rest_correlation([], []) is None
    with pytest.raises(ValueError):
        item_rest_correlation([1.0], [1.0, 2.0])


def test_failure_message_strips_ansi_and_keeps_markup_as_text():
    assert failure_message({"ename": "ValueError", "evalue": "\x1b[1;31mbad\x1b[0m  <b>x</b>\n"}) == "ValueError: bad <b>x</b>"
    assert failure_message({"ename": "NotImplementedError", "evalue": ""}) == "NotImplementedError"


def test_render_without_graded_submissions():
    page = render_html(ReportData("c", "a", [], 0.0, [], [], [], [], []))
    for marker in ('id="exercises"', 'id="score-distribution"', 'id="exercise-means"', 'id="failures"', 'id="ungraded"'):
        assert marker in page
    assert "Every submission was graded." in page
    assert "No test cell failed." in page


def _autograded(folder, student, notebook, errors: dict[str, str]):
    """An autograded notebook whose test cells ``test_a``/``test_b`` failed with the given messages."""
    cells = []
    for grade_id in ("test_a", "test_b"):
        cell = new_code_cell("check()", metadata={"nbgrader": {"grade": True, "solution": False, "grade_id": grade_id, "points": 1}})
        if grade_id in errors:
            cell.outputs = [new_output("error", ename="AssertionError", evalue=errors[grade_id], traceback=[])]
        cells.append(cell)
    path = folder / student / "hw" / f"{notebook}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=cells), str(path))


def test_report_data_from_export_rows(tmp_path):
    columns = [ExerciseColumn("nb", "test_a", 1.0), ExerciseColumn("nb", "test_b", 1.0)]
    rows = [
        GradeRow("ann", "hw", Status.GRADED, {"nb:test_a": 1.0, "nb:test_b": 1.0}, 2.0, 2.0),
        GradeRow("bob", "hw", Status.GRADED, {"nb:test_a": 0.0, "nb:test_b": 1.0}, 1.0, 2.0),
        GradeRow("cid", "hw", Status.GRADED, {"nb:test_a": 0.0, "nb:test_b": 0.0}, 0.0, 2.0),
        GradeRow("dee", "hw", Status.GRADED, {}, 0.0, 2.0),  # graded, but its notebook was not submitted
        GradeRow("eve", "hw", Status.ERROR, {}, 0.0, 2.0, reason="nb.ipynb is not valid notebook JSON"),
        GradeRow("fay", "hw", Status.NOT_SUBMITTED, {}, 0.0, 2.0),
    ]
    _autograded(tmp_path, "ann", "nb", {})
    _autograded(tmp_path, "bob", "nb", {"test_a": "<script>wrong dtype</script>"})
    _autograded(tmp_path, "cid", "nb", {"test_a": "<script>wrong dtype</script>"})  # test_b: no error output
    data = collect_report_data(columns, rows, course_id="c", assignment_id="hw", autograded_dir=tmp_path)

    assert [r.student_id for r in data.graded] == ["ann", "bob", "cid", "dee"]
    assert data.totals == [2.0, 1.0, 0.0, 0.0]
    assert data.ungraded == [("eve", "nb.ipynb is not valid notebook JSON")]
    assert data.not_submitted == ["fay"]
    a, b = data.exercises
    assert (a.label, a.failed, a.mean_points, a.full_marks) == ("1.1", 3, 0.25, 0.25)
    assert a.failures == [("AssertionError: <script>wrong dtype</script>", 2), (NOT_SUBMITTED, 1)]
    assert b.failures == [(NO_ERROR_OUTPUT, 1), (NOT_SUBMITTED, 1)]

    page = render_html(data)
    assert "<script>wrong dtype" not in page and "&lt;script&gt;wrong dtype&lt;/script&gt;" in page
    assert page.count("<script>") == 1, "only the page's own script (allowed by hash in the CSP)"
