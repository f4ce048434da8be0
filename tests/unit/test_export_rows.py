"""Per-exercise export rows (torchsteps.results.export) read from a real SQLite gradebook; no kernel."""

from __future__ import annotations

import csv

import pytest
from nbgrader.api import Gradebook

from torchsteps.results.export import collect_rows, write_csv
from torchsteps.results.status import Status, SubmissionResult, write_status


@pytest.fixture
def gradebook(tmp_path):
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(url, "course") as gb:
        gb.add_assignment("hw")
        for notebook, cells in (("02_b", ["test_y"]), ("01_a", ["test_x2", "test_x1"])):
            gb.add_notebook(notebook, "hw")
            for i, name in enumerate(cells):
                gb.add_grade_cell(name, notebook, "hw", max_score=i + 1, cell_type="code")
                gb.add_source_cell(name, notebook, "hw", cell_type="code", source="", checksum="")
        for student in ("ann", "bob", "cid"):
            gb.add_student(student)
        submission = gb.add_submission("hw", "ann")
        for nb in submission.notebooks:
            for grade in nb.grades:
                grade.auto_score = grade.max_score if grade.name != "test_x1" else 0
        gb.db.commit()
        yield gb


def test_rows_hold_each_test_cell_in_notebook_then_cell_order(gradebook, tmp_path):
    write_status(tmp_path, [
        SubmissionResult("ann", "hw", Status.GRADED, notes=["missing notebook 03.ipynb (scored 0)"]),
        SubmissionResult("bob", "hw", Status.ERROR, reason="01_a.ipynb is not valid notebook JSON"),
    ])
    columns, rows = collect_rows(gradebook, tmp_path, "hw")
    assert [c.key for c in columns] == ["01_a:test_x2", "01_a:test_x1", "02_b:test_y"]
    assert [c.max_score for c in columns] == [1.0, 2.0, 1.0]
    by_student = {r.student_id: r for r in rows}
    ann, bob, cid = by_student["ann"], by_student["bob"], by_student["cid"]
    assert (ann.status, ann.score, ann.max_score) == (Status.GRADED, 2.0, 4.0)
    assert ann.scores == {"01_a:test_x2": 1.0, "01_a:test_x1": 0.0, "02_b:test_y": 1.0}
    assert ann.reason == "missing notebook 03.ipynb (scored 0)"
    assert (bob.status, bob.reason, bob.scores) == (Status.ERROR, "01_a.ipynb is not valid notebook JSON", {})
    assert (cid.status, cid.scores) == (Status.NOT_SUBMITTED, {})


def test_csv_has_a_column_per_test_cell_and_plain_status_values(gradebook, tmp_path):
    path = write_csv(gradebook, tmp_path, ["hw"], tmp_path / "grades.csv")
    with path.open(encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [r["student_id"] for r in table] == ["ann", "bob", "cid"]
    assert {r["status"] for r in table} == {"graded", "not submitted"}
    ann = table[0]
    assert (ann["01_a:test_x1"], ann["01_a:test_x2"], ann["score"], ann["max_score"]) == ("0", "1", "2", "4")


def test_columns_follow_the_source_notebook_not_the_gradebook_order(gradebook, tmp_path):
    """PostgreSQL returns a notebook's source cells in any order (regression: the cluster's grades.csv had its
    columns in another order than a local run's); the course's notebook on disk decides."""
    import nbformat

    folder = tmp_path / "source" / "hw"
    folder.mkdir(parents=True)
    cells = [nbformat.v4.new_code_cell("", metadata={"nbgrader": {"grade_id": name, "grade": True}})
             for name in ("test_x1", "test_x2")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), str(folder / "01_a.ipynb"))
    columns, _ = collect_rows(gradebook, tmp_path, "hw")
    assert [c.key for c in columns] == ["01_a:test_x1", "01_a:test_x2", "02_b:test_y"]
