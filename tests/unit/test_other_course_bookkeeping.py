"""Bookkeeping for courses with several assignments, late and manual grades (fast: no kernel).

Uses the fixture course tests/fixtures/other_course (two assignments; bo has no folder for the second),
its gradebook made by nbgrader's own generate_assignment, in-process.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest
from rich.console import Console

from torchsteps.grading.course import course_assignments, open_api, register_roster
from torchsteps.grading.driver import grade_submission, list_submissions
from torchsteps.nbgrader_plugins.execute import handed_out_files
from torchsteps.results.export import ExerciseColumn, GradeRow
from torchsteps.results.review import review_items, student_rows
from torchsteps.results.status import Status, SubmissionResult, read_status, write_status
from torchsteps.results.table import print_grades

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "other_course"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("books") / "course"
    for folder in ("source", "submitted"):
        shutil.copytree(FIXTURE / folder, root / folder)
    shutil.copy(FIXTURE / "nbgrader_config.py", root / "nbgrader_config.py")
    api = open_api(root)
    register_roster(api)
    for assignment in ("weather_log", "weather_trend"):
        assert api.generate_assignment(assignment, force=True)["success"]
    return api


def test_the_roster_names_both_assignments_and_the_due_date_is_parsed(api):
    from nbgrader.api import Gradebook

    assert course_assignments(api) == ["weather_log", "weather_trend"]
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        assert gb.find_assignment("weather_log").duedate == datetime(2026, 3, 15, 17, 0, 0)


def test_a_student_without_a_folder_is_not_submitted_and_not_listed(api):
    assert list_submissions(api, "weather_log") == ["ana", "bo"]
    assert list_submissions(api, "weather_trend") == ["ana"]  # bo has a folder, but only for weather_log
    result = grade_submission(api, "weather_trend", "bo", {"ana", "bo", "cy"}, feedback=False)
    assert (result.status, result.reason) == (Status.NOT_SUBMITTED, "")


def test_handed_out_files_come_from_the_release_folder(api):
    assert handed_out_files(api.config, "weather_log") == ["data/readings.csv"]
    assert handed_out_files(api.config, "weather_trend") == []
    assert handed_out_files(api.config, "no_such_assignment") == []
    pytorch = open_api(REPO)
    assert handed_out_files(pytorch.config, "pytorch_basics") == ["checks.py"]


def test_status_records_of_other_assignments_and_students_survive_a_run(tmp_path):
    write_status(tmp_path, [SubmissionResult("ana", "a1", Status.GRADED), SubmissionResult("bo", "a1", Status.ERROR, reason="bad JSON")])
    write_status(tmp_path, [SubmissionResult("ana", "a2", Status.GRADED)])
    write_status(tmp_path, [SubmissionResult("bo", "a1", Status.GRADED)])
    assert {(r.assignment_id, r.student_id): r.status for r in read_status(tmp_path)} == {
        ("a1", "ana"): Status.GRADED, ("a1", "bo"): Status.GRADED, ("a2", "ana"): Status.GRADED,
    }
    write_status(tmp_path, [SubmissionResult("cy", "a1", Status.GRADED)], forget={("a1", "bo")})  # only that record goes
    assert {(r.assignment_id, r.student_id) for r in read_status(tmp_path)} == {("a1", "ana"), ("a1", "cy"), ("a2", "ana")}


def _rows():
    late = GradeRow("bo", "a1", Status.GRADED, {"nb:t": 1.0}, 0.0, 10.0, raw_score=1.0, late_penalty=1.0,
                    seconds_late=9605.0, timestamp="2026-03-15 19:40:05", duedate="2026-03-15 17:00:00",
                    pending=("nb:m",), pending_points=2.0)
    flagged = GradeRow("cy", "a1", Status.GRADED, {"nb:t": 2.0}, 2.0, 10.0, raw_score=2.0,
                       flags=("nb: cell 3, line 1: opens a file",), flagged=True)
    broken = GradeRow("dee", "a1", Status.ERROR, {}, 0.0, 10.0, reason="nb.ipynb is an empty file, not a notebook")
    absent = GradeRow("eve", "a1", Status.NOT_SUBMITTED, {}, 0.0, 10.0)
    return [late, flagged, broken, absent]


def test_review_lists_ungradeable_flagged_late_and_pending_in_that_order():
    items = review_items(_rows())
    assert [(i.student_id, i.kind) for i in items] == [("dee", "ungradeable"), ("cy", "flagged"), ("bo", "late"), ("bo", "pending")]
    assert "2.7 h after the due date" in items[2].detail and "late penalty 1 of 1 points" in items[2].detail
    assert items[3].detail == "2 points wait for a manual grade: nb:m"
    table = {s.student_id: s for s in student_rows(_rows())}
    assert (table["bo"].late, table["bo"].score, table["bo"].pending_points, table["cy"].flags) == (True, 0.0, 2.0, 1)


def test_the_table_shows_pending_cells_and_the_late_penalty():
    console = Console(width=200, record=True)
    columns = [ExerciseColumn("nb", "t", 2.0), ExerciseColumn("nb", "m", 2.0, "manual")]
    print_grades(columns, _rows()[:1], console)
    text = console.export_text()
    line = next(l for l in text.splitlines() if "bo" in l)
    assert "pending" in line and "(+2 pending)" in line
    # The late penalty is listed under the table, with the reasons and flags (not squeezed into a column).
    # Regression: "[late: ...]" was read as rich markup and vanished.
    assert "- bo (late): penalty 1 of 1" in text.splitlines()
