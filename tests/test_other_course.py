"""An instructor's own nbgrader course, not the PyTorch one, grades with our hardening as with stock nbgrader.

The fixture course ``tests/fixtures/other_course`` ("Weather logs") uses every kind of nbgrader cell
(autograded answers with visible, hidden and partial-credit tests; manually graded code and Markdown
answers; a task cell; read-only code and Markdown cells), a data file the notebook opens
(``data/readings.csv``), a due date with nbgrader's ``zero`` late penalty, and two assignments:

- ana: on time, nbformat 4.5, every answer right, her data folder handed in too;
- bo: 2 h 40 min late, saved as nbformat 4.0 (no cell ids), one test failing, partial credit on another,
  the Markdown answer left empty, only the notebook handed in, nothing for the second assignment;
- cy: on the roster, submits nothing.

The same files are graded twice, at the same time: by ``python -m torchsteps grade`` with the
fixture's config, and by stock ``nbgrader autograde`` with a stock config (only the late penalty set).
Kernel starts: 3 for ours, 3 for stock, 1 for the later ``nbgrader autograde --student bo``.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from torchsteps.results.export import PENDING, STOCK_COLUMNS

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "other_course"
COURSE_ID = "weather-logs"
ASSIGNMENTS = ("weather_log", "weather_trend")
MANUAL = {"warmest_day": 2.0, "explain_mean": 1.0, "task_two_weeks": 2.0}
STOCK_CONFIG = """\
c = get_config()
c.CourseDirectory.root = {root!r}
c.CourseDirectory.course_id = {course!r}
c.CourseDirectory.db_url = "sqlite:///{root}/gradebook.db"
c.LateSubmissionPlugin.penalty_method = "zero"
"""
TIMEOUT = 30 * 60


def _env():
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def _nbgrader(course: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=_env(),
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def _copy(dst: Path, *, stock: bool) -> Path:
    shutil.copytree(FIXTURE, dst, ignore=shutil.ignore_patterns(*[p.strip("/") for p in (FIXTURE / ".gitignore").read_text().split() if p.startswith("/")]))
    if stock:
        (dst / "nbgrader_config.py").write_text(STOCK_CONFIG.format(root=str(dst), course=COURSE_ID))
    return dst


def _grade_stock(course: Path) -> None:
    _nbgrader(course, "db", "assignment", "add", "weather_log", "--duedate=2026-03-15 17:00:00 UTC")
    for assignment in ASSIGNMENTS:
        _nbgrader(course, "generate_assignment", assignment, "--force")
        _nbgrader(course, "autograde", assignment, "--force")
    _nbgrader(course, "export", "--to", "stock.csv")


def cells(course: Path) -> dict[tuple, tuple]:
    """``{(assignment, student, notebook, grade_id): (auto_score, manual_score, needs_manual_grade)}``."""
    out = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        for assignment in gb.assignments:
            for submission in assignment.submissions:
                for nb in submission.notebooks:
                    for grade in nb.grades:
                        out[assignment.name, submission.student.id, nb.name, grade.name] = (
                            grade.auto_score, grade.manual_score, bool(grade.needs_manual_grade))
    return out


def csv_rows(path: Path) -> dict[tuple[str, str], dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return {(r["assignment"], r["student_id"]): r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def courses(tmp_path_factory):
    base = tmp_path_factory.mktemp("other")
    ours, stock = _copy(base / "ours", stock=False), _copy(base / "stock", stock=True)
    # a terminal wide enough for one column per exercise (80 columns, rich's default, gives one per notebook)
    proc = subprocess.Popen([sys.executable, "-m", "torchsteps", "--course", str(ours), "grade", "-j", "1"],
                            cwd=ours, env=dict(_env(), COLUMNS="200"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _grade_stock(stock)
    finally:
        stdout, _ = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, stdout[-5000:]
    return ours, stock, stdout


def test_autograded_scores_are_stock_nbgraders_cell_for_cell(courses):
    ours, stock, _ = courses
    a, b = cells(stock), cells(ours)
    assert len(a) == 2 * 5 + 1, sorted(a)  # ana and bo: 5 graded cells each; ana's second assignment: 1
    assert b == a
    # What the files deserve (so that equal does not mean equally broken):
    assert a["weather_log", "ana", "temperatures", "test_mean_celsius"] == (2.0, None, False)
    assert a["weather_log", "ana", "temperatures", "test_to_fahrenheit"] == (3.0, None, False)
    assert a["weather_log", "bo", "temperatures", "test_mean_celsius"] == (0.0, None, False)
    assert a["weather_log", "bo", "temperatures", "test_to_fahrenheit"] == (1.0, None, False)  # partial credit


def test_manual_cells_wait_for_the_formgrader_and_an_empty_answer_scores_zero(courses):
    ours, _, _ = courses
    graded = cells(ours)
    for grade_id in MANUAL:
        assert graded["weather_log", "ana", "temperatures", grade_id] == (None, None, True), grade_id
    # bo left the Markdown answer as released: nbgrader scores it 0 ("No response"), no manual grade needed.
    assert graded["weather_log", "bo", "temperatures", "explain_mean"] == (0.0, None, False)
    with Gradebook(f"sqlite:///{ours / 'gradebook.db'}", COURSE_ID) as gb:
        assert gb.find_submission("weather_log", "ana").needs_manual_grade
        assert not gb.find_submission("weather_trend", "ana").needs_manual_grade


def test_late_penalty_and_stock_columns_equal_stock_nbgrader_export(courses):
    ours, stock, _ = courses
    mine, theirs = csv_rows(ours / "grades.csv"), csv_rows(stock / "stock.csv")
    with (ours / "grades.csv").open(encoding="utf-8") as f:
        assert next(csv.reader(f))[: len(STOCK_COLUMNS)] == STOCK_COLUMNS
    assert set(theirs) <= set(mine)
    numbers = ("raw_score", "late_submission_penalty", "score", "max_score")
    for key, row in theirs.items():
        assert {k: float(row[k]) for k in numbers} == {k: float(mine[key][k]) for k in numbers}, key
        assert (row["duedate"], row["timestamp"]) == (mine[key]["duedate"], mine[key]["timestamp"]), key
    bo = mine["weather_log", "bo"]
    assert float(bo["late_submission_penalty"]) == float(bo["raw_score"]) == 1.0 and float(bo["score"]) == 0.0
    assert float(mine["weather_log", "ana"]["late_submission_penalty"]) == 0.0
    assert (mine["weather_log", "ana"]["first_name"], mine["weather_log", "ana"]["email"]) == ("Ana", "ana@example.org")


def test_the_handed_out_data_file_reaches_the_kernel(courses):
    ours, _, _ = courses
    assert not (FIXTURE / "submitted" / "bo" / "weather_log" / "data").exists()  # bo handed in the notebook only
    for student in ("ana", "bo"):
        nb = nbformat.read(str(ours / "autograded" / student / "weather_log" / "temperatures.ipynb"), as_version=4)
        load = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "load_readings")
        assert [o.get("text", "") for o in load.outputs] == ["14 readings, from 2026-03-01 to 2026-03-14\n"], student


def test_a_student_without_a_folder_is_not_submitted_not_an_error(courses):
    ours, _, stdout = courses
    rows = csv_rows(ours / "grades.csv")
    assert {k: r["status"] for k, r in rows.items()} == {
        ("weather_log", "ana"): "graded", ("weather_log", "bo"): "graded", ("weather_log", "cy"): "not submitted",
        ("weather_trend", "ana"): "graded", ("weather_trend", "bo"): "not submitted", ("weather_trend", "cy"): "not submitted",
    }
    assert "ERROR" not in stdout and "could not be graded" not in stdout.replace("0 could not be graded", "")


def test_manual_points_are_pending_not_zero_in_table_csv_and_report(courses):
    ours, _, stdout = courses
    ana = csv_rows(ours / "grades.csv")["weather_log", "ana"]
    assert [ana[f"temperatures:{g}"] for g in MANUAL] == [PENDING] * 3
    assert float(ana["pending_points"]) == sum(MANUAL.values())
    line = next(l for l in stdout.splitlines() if l.strip("│ ").startswith("ana") and "pending" in l)
    assert line.count("pending") == 4, line  # three cells and the total's "(+5 pending)"
    page = (ours / "report" / "weather_log" / "index.html").read_text(encoding="utf-8")
    row = next(l for l in page.splitlines() if 'data-student="ana"' in l)
    assert '<td class="num pending">5 pending</td>' in row
    index = (ours / "report" / "index.html").read_text(encoding="utf-8")
    assert 'href="weather_log/index.html"' in index and 'href="weather_trend/index.html"' in index
    late = [l for l in index.splitlines() if '<tr class="late">' in l]
    assert len(late) == 1 and ">bo<" in late[0] and "late penalty 1 of 1 points" in late[0]


def test_export_tells_the_truth_after_a_manual_grade_and_a_stock_autograde(courses, tmp_path):
    ours, _, _ = courses
    course = tmp_path / "course"
    shutil.copytree(ours, course)
    # What the formgrader's API does for a manual grade (formgrader/apihandlers.py, GradeHandler.put).
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        grade = gb.find_grade("warmest_day", "temperatures", "weather_log", "ana")
        grade.manual_score = 1.5
        gb.db.commit()
    _nbgrader(course, "export", "--to", "after_manual.csv")
    ana = csv_rows(course / "after_manual.csv")["weather_log", "ana"]
    assert ana["temperatures:warmest_day"] == "1.5" and float(ana["pending_points"]) == 3.0
    assert float(ana["score"]) == 6.5
    # A stock `nbgrader autograde --student` with the course's config: the manual grade stays, bo's late
    # penalty is recomputed, and the export follows the gradebook.
    _nbgrader(course, "autograde", "weather_log", "--student", "bo", "--force")
    _nbgrader(course, "export", "--to", "after_stock.csv")
    rows = csv_rows(course / "after_stock.csv")
    assert rows["weather_log", "ana"]["temperatures:warmest_day"] == "1.5"
    bo = rows["weather_log", "bo"]
    assert (bo["status"], bo["temperatures:test_to_fahrenheit"], bo["late_submission_penalty"], bo["score"]) == ("graded", "1", "1", "0")
