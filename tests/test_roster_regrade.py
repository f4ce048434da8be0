"""nbgrader's own bookkeeping, end to end with the real commands: the gradebook is the roster, regrading is
incremental, a cell graded by hand stays graded, feedback goes out as one zip per student.

One small class (one notebook each, so one kernel per grading of a student), graded step by step:
1. `nbgrader db student import extra.csv` adds cleo; students.csv has ada and ben; stranger is on neither.
2. `python -m torchsteps grade` (what `make grade` runs), in an 80-column terminal: 3 kernels.
3. ben's failing cell graded by hand, as the formgrader does; stock `nbgrader autograde --student ben --force`,
   then `grade --student ben --force`: 2 kernels. The manual grade stays, the cell is not reopened.
4. cleo changes her notebook; `grade --assignment pytorch_basics`: only cleo runs again (1 kernel).
"""

from __future__ import annotations

import csv
import html
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from conftest import ASSIGNMENT, COURSE_ID, REPO, copy_course, tree_digest
from torchsteps.authoring.catalogue import by_notebook
from torchsteps.authoring.demo_submissions import instructor_answers
from torchsteps.authoring.submissions import fill_solutions
from torchsteps.results.status import Status, SubmissionResult, read_status, write_status

NOTEBOOK = "01_numpy_and_pytorch"
MISTAKE_CELL = "test_to_tensor_copy"


def _run(course: Path, *args: str, cli=("-m", "torchsteps", "--course")) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin", COLUMNS="80")
    command = [sys.executable, *cli, *([str(course)] if cli[-1] == "--course" else []), *args]
    done = subprocess.run(command, cwd=course, capture_output=True, text=True, env=env, timeout=30 * 60)
    assert done.returncode == 0, f"{command}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    return _run(course, *args, cli=("-m", "nbgrader"))


def _db(course: Path) -> Gradebook:
    return Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID)


def _grade_of(course: Path, student: str, cell: str):
    with _db(course) as gb:
        g = gb.find_grade(cell, NOTEBOOK, ASSIGNMENT, student)
        return {"auto": g.auto_score, "manual": g.manual_score, "score": g.score, "needs_manual_grade": g.needs_manual_grade}


def formgrader_put_grade(course: Path, student: str, cell: str, manual_score: float) -> None:
    """What the formgrader's `PUT /formgrader/api/grade/<id>` does (nbgrader 0.9.6,
    server_extensions/formgrader/apihandlers.py, GradeHandler.put), through the same Gradebook API."""
    with _db(course) as gb:
        grade = gb.find_grade_by_id(gb.find_grade(cell, NOTEBOOK, ASSIGNMENT, student).id)
        grade.manual_score = manual_score
        grade.extra_credit = None
        grade.needs_manual_grade = grade.manual_score is None and grade.auto_score is None
        gb.db.commit()


def _rows(course: Path) -> dict[str, dict]:
    with (course / "grades.csv").open(newline="", encoding="utf-8") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("roster") / "course", demo_class=False)
    (course / "students.csv").write_text("id,first_name,last_name,email\nada,Ada,Lindqvist,ada@uni.example\nben,,,\n", encoding="utf-8")
    release = nbformat.read(str(REPO / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    answers = instructor_answers(nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4))
    mistake = by_notebook()[NOTEBOOK].exercise("to_tensor_copy").mistake("from-numpy").code
    notebooks = {"ada": fill_solutions(release, answers), "ben": fill_solutions(release, dict(answers, to_tensor_copy=mistake)),
                 "cleo": fill_solutions(release, answers), "stranger": fill_solutions(release, answers)}
    for student, nb in notebooks.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, str(folder / f"{NOTEBOOK}.ipynb"))
    # 1. a student added with nbgrader's own command, not in students.csv
    (course / "extra.csv").write_text("id,first_name,last_name\ncleo,Cleo,Marchetti\n", encoding="utf-8")
    _nbgrader(course, "db", "student", "import", "extra.csv")
    before = tree_digest(course / "submitted")
    # 2. make grade
    first = _run(course, "grade", "-j", "1")
    rows_first = _rows(course)
    submitted_after_first = tree_digest(course / "submitted")
    autograded = course / "autograded"
    mtimes = {s: (autograded / s / ASSIGNMENT / f"{NOTEBOOK}.ipynb").stat().st_mtime_ns for s in ("ada", "ben", "cleo")}
    # 3. a manual grade in the formgrader, then two later autogrades of ben
    formgrader_put_grade(course, "ben", MISTAKE_CELL, 1.0)
    graded_by_hand = _grade_of(course, "ben", MISTAKE_CELL)
    _nbgrader(course, "autograde", ASSIGNMENT, "--student", "ben", "--force")
    after_stock = _grade_of(course, "ben", MISTAKE_CELL)
    forced = _run(course, "grade", "--student", "ben", "--force", "-j", "1")
    after_ours = _grade_of(course, "ben", MISTAKE_CELL)
    # a mistyped --student is refused, and a row such a typo left in an older run's status is dropped
    typo = subprocess.run([sys.executable, "-m", "torchsteps", "--course", str(course), "grade", "--student", "cleoo"],
                          cwd=course, capture_output=True, text=True, timeout=10 * 60)
    write_status(course, read_status(course) + [SubmissionResult("nobody_such", ASSIGNMENT, status=Status.NOT_SUBMITTED)])
    # 4. cleo changes her notebook; grade again without --force
    changed = notebooks["cleo"]
    changed.cells.append(nbformat.v4.new_markdown_cell("I checked my work with pytest --selfcheck."))
    nbformat.write(changed, str(course / "submitted" / "cleo" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"))
    incremental = _run(course, "grade", "--assignment", ASSIGNMENT, "-j", "1")
    mtimes_after = {s: (autograded / s / ASSIGNMENT / f"{NOTEBOOK}.ipynb").stat().st_mtime_ns for s in ("ada", "ben", "cleo")}
    return {
        "course": course, "first": first.stdout, "rows_first": rows_first, "before": before, "submitted_after_first": submitted_after_first,
        "graded_by_hand": graded_by_hand, "after_stock": after_stock, "after_ours": after_ours, "forced": forced.stdout,
        "incremental": incremental.stdout, "typo": typo, "mtimes": mtimes, "mtimes_after": mtimes_after, "rows_last": _rows(course),
    }


def test_students_from_the_roster_csv_and_from_nbgrader_db_import_are_graded(steps):
    rows = steps["rows_first"]
    assert {s: rows[s]["status"] for s in ("ada", "ben", "cleo", "stranger")} == {
        "ada": "graded", "ben": "graded", "cleo": "graded", "stranger": "error"}
    assert "not on the roster" in rows["stranger"]["reason"] and "students.csv" in rows["stranger"]["reason"]
    assert float(rows["ben"][f"{NOTEBOOK}:{MISTAKE_CELL}"]) == 0 and float(rows["cleo"][f"{NOTEBOOK}:{MISTAKE_CELL}"]) > 0
    with _db(steps["course"]) as gb:
        ada = gb.find_student("ada")
        assert (ada.first_name, ada.last_name, ada.email) == ("Ada", "Lindqvist", "ada@uni.example")
        assert {s.id for s in gb.students} == {"ada", "ben", "cleo"}  # the stranger was not added
    assert steps["submitted_after_first"] == steps["before"]  # grading never writes submitted/
    assert "Roster: 3 students in the gradebook" in steps["first"]


def test_the_table_fits_the_terminal_and_reasons_are_listed_under_it(steps):
    out = steps["first"]
    table = out[out.index("Grades (points per"):out.index("Reasons and flags:")]
    assert max(len(line) for line in table.splitlines()) <= 80, table
    assert "- stranger (error): student 'stranger' is not on the roster" in out
    reason_lines = out[out.index("Reasons and flags:"):].splitlines()
    assert not any("not on the roster" in line for line in table.splitlines())  # not squeezed into a column
    assert any(line.startswith("- stranger (error): ") for line in reason_lines), reason_lines
    assert "exchange" not in out.lower(), "the course does not use nbgrader's exchange: no warning about it"


def test_each_graded_student_gets_one_feedback_zip_without_hidden_tests(steps):
    course = steps["course"]
    zips = course / "feedback_zips" / ASSIGNMENT
    assert sorted(p.name for p in zips.iterdir()) == ["ada.zip", "ben.zip", "cleo.zip"]
    source = nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    hidden = [line.strip() for c in source.cells if "### BEGIN HIDDEN TESTS" in c.source
              for line in c.source.split("### BEGIN HIDDEN TESTS", 1)[1].split("### END HIDDEN TESTS", 1)[0].splitlines()
              if len(line.strip()) > 12]
    assert hidden
    for path in zips.iterdir():
        feedback = course / "feedback" / path.stem / ASSIGNMENT  # what nbgrader generate_feedback wrote
        with zipfile.ZipFile(path) as zf:
            assert zf.namelist() == sorted(f"{ASSIGNMENT}/{p.name}" for p in feedback.iterdir())
            assert f"{ASSIGNMENT}/{NOTEBOOK}.html" in zf.namelist()
            for name in zf.namelist():
                content = zf.read(name)
                assert content == (feedback / name.split("/", 1)[1]).read_bytes()
                text = html.unescape(content.decode("utf-8"))
                assert not [line for line in hidden if line in text], f"{path.name}: {name}"


def test_a_cell_graded_by_hand_is_never_reopened(steps):
    """Stock SaveAutoGrades reopens it (needs_manual_grade=True) on every autograde; ours keeps it done,
    through the stock `nbgrader autograde` command and through `grade --force` alike."""
    assert steps["graded_by_hand"] == {"auto": 0.0, "manual": 1.0, "score": 1.0, "needs_manual_grade": False}
    for after in ("after_stock", "after_ours"):
        assert steps[after] == steps["graded_by_hand"], after
    assert "[1/1] ben: graded" in steps["forced"]
    assert float(steps["rows_last"]["ben"][f"{NOTEBOOK}:{MISTAKE_CELL}"]) == 1.0


def test_only_new_or_changed_submissions_are_graded_again(steps):
    out = steps["incremental"]
    for student in ("ada", "ben"):
        assert f"{student}: unchanged since it was graded" in out
    assert steps["mtimes_after"]["ada"] == steps["mtimes"]["ada"], "ada's unchanged submission was autograded again"
    assert "cleo: graded" in out and steps["mtimes_after"]["cleo"] != steps["mtimes"]["cleo"]
    assert "stranger: ERROR" in out  # submissions that could not be graded are always tried again
    assert "4 submissions" in out and "(2 run now, 2 unchanged and kept)" in out
    # the kept results are still in the export and the table
    assert {s: steps["rows_last"][s]["status"] for s in ("ada", "ben", "cleo")} == dict.fromkeys(("ada", "ben", "cleo"), "graded")


def test_a_mistyped_student_is_refused_and_leaves_no_row(steps):
    # Review: `grade --student nobody_such` exited 0 and that id stayed in every later table as "not submitted".
    typo = steps["typo"]
    assert typo.returncode == 2, typo.stdout[-2000:] + typo.stderr[-2000:]
    assert "no student 'cleoo': not in the gradebook and no folder" in typo.stdout
    assert not {"cleoo", "nobody_such"} & set(steps["rows_last"])
    assert {"ada", "ben", "cleo"} <= set(steps["rows_last"])
