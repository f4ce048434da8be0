"""The gradebook in PostgreSQL: a course graded with a PostgreSQL URL gives the grades SQLite gives.

``nbgrader_config.py`` takes the gradebook URL from ``TORCHSTEPS_DB_URL`` (SQLite in the course folder
when unset), so a class graded from several machines can share one PostgreSQL gradebook. This module
grades a small class into the session's throwaway PostgreSQL server (``tests/pgserver.py``, the
``postgres`` fixture of ``conftest.py``) with the real CLI and
two worker processes (``python -m torchsteps grade -j 2``), and grades the same submissions into SQLite
in another copy of the course: both ``grades.csv`` must be the same file. The URL names the installed
driver, ``postgresql+psycopg2://``: SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3 (see
``test_a_bare_postgresql_url_works``).

Without PostgreSQL's server programs the module is skipped, except under ``CI=true``, where it fails
(CI installs them: apt-get install postgresql).
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import ASSIGNMENT, COURSE_ID, REPO, copy_course, tree_digest, write_roster
from pgserver import URL_SCHEME
from torchsteps.authoring.catalogue import by_notebook
from torchsteps.authoring.demo_submissions import instructor_answers
from torchsteps.authoring.submissions import fill_solutions, grade_ids
from torchsteps.constants import is_test_cell

NOTEBOOK = "02_creating_tensors"
DB_NAME = "gradebook"
GRADE_TIMEOUT = 20 * 60


# --- The class: one notebook per student ----------------------------------------------------------------


def build_class(course: Path) -> dict[str, set[str]]:
    """Write the submissions; returns ``{student: test cells expected to score 0}``."""
    source = nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    release = nbformat.read(str(course / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    answers = instructor_answers(source)
    mistaken = by_notebook()[NOTEBOOK].exercises[1]
    submissions = {
        "correct": (fill_solutions(release, answers), set()),
        "blank": (release, set(grade_ids(release))),
        "mistake": (fill_solutions(release, dict(answers, **{mistaken.solution_id: mistaken.mistakes[0].code})),
                    set(mistaken.test_ids)),
    }
    for student, (nb, _) in submissions.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, str(folder / f"{NOTEBOOK}.ipynb"))
    write_roster(course, submissions)
    return {student: zero for student, (_, zero) in submissions.items()}


def _grade(course: Path, db_url: str | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TORCHSTEPS_DB_URL"}
    if db_url:
        env["TORCHSTEPS_DB_URL"] = db_url
    return subprocess.Popen([sys.executable, "-m", "torchsteps", "--course", str(course), "grade", "-j", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=course, env=env)


@pytest.fixture(scope="module")
def graded(postgres, tmp_path_factory):
    """The same class graded twice, at once: into PostgreSQL and into SQLite (the default)."""
    base = tmp_path_factory.mktemp("postgres")
    courses = {"postgres": copy_course(base / "postgres", demo_class=False),
               "sqlite": copy_course(base / "sqlite", demo_class=False)}
    expect = {name: build_class(course) for name, course in courses.items()}
    assert expect["postgres"] == expect["sqlite"]
    before = tree_digest(courses["postgres"] / "submitted")
    url = postgres.create_database(DB_NAME)
    procs = {"postgres": _grade(courses["postgres"], url), "sqlite": _grade(courses["sqlite"], None)}
    out = {}
    for name, proc in procs.items():
        stdout, _ = proc.communicate(timeout=GRADE_TIMEOUT)
        assert proc.returncode == 0, f"grading into {name} failed:\n{stdout[-5000:]}\n--- server log ---\n{postgres.log_tail()}"
        out[name] = stdout
    assert tree_digest(courses["postgres"] / "submitted") == before
    return courses, expect["postgres"], url, out


def _rows(course: Path) -> dict[str, dict[str, str]]:
    with (course / "grades.csv").open(newline="", encoding="utf-8") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def _points() -> dict[str, float]:
    source = nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    return {c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader["points"]) for c in source.cells
            if is_test_cell(c)}


# --- Tests ----------------------------------------------------------------------------------------------


def test_a_bare_postgresql_url_works(postgres, monkeypatch):
    """What an instructor types, ``postgresql://user:password@host:port/db``, opens the gradebook.

    Regression: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed;
    nbgrader_config.py maps it to the pinned psycopg2.
    """
    from nbgrader.api import Gradebook

    from torchsteps.grading.course import load_config

    url = postgres.create_database("bare_url").replace(f"{URL_SCHEME}://", "postgresql://", 1)
    monkeypatch.setenv("TORCHSTEPS_DB_URL", url)
    config = load_config(REPO)
    with Gradebook(config.CourseDirectory.db_url, COURSE_ID) as gb:
        gb.update_or_create_student("ada")
        assert [s.id for s in gb.students] == ["ada"]


def test_grades_csv_has_the_expected_scores(graded):
    courses, expect, _, out = graded
    assert re.search(r"\b0 could not be graded", out["postgres"]), out["postgres"][-3000:]
    rows = _rows(courses["postgres"])
    points = _points()
    assert sorted(rows) == sorted(expect)
    for student, zero in expect.items():
        row = rows[student]
        assert row["status"] == "graded", row
        scores = {k.split(":", 1)[1]: float(v) for k, v in row.items() if k.startswith(NOTEBOOK + ":")}
        assert scores == {cell: 0.0 if cell in zero else full for cell, full in points.items()}, student


def test_the_gradebook_is_in_postgresql(graded, postgres):
    import psycopg2
    from nbgrader.api import Gradebook

    courses, expect, url, _ = graded
    conn = psycopg2.connect(**postgres.connect_args(DB_NAME))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM student ORDER BY id")
            assert [r[0] for r in cur.fetchall()] == sorted(expect)
            cur.execute("SELECT s.student_id, count(*) FROM grade g JOIN submitted_notebook n ON g.notebook_id = n.id "
                        "JOIN notebook nb ON n.notebook_id = nb.id JOIN submitted_assignment s ON n.assignment_id = s.id "
                        "WHERE nb.name = %s GROUP BY s.student_id ORDER BY s.student_id", (NOTEBOOK,))
            assert dict(cur.fetchall()) == {s: len(_points()) for s in expect}
    finally:
        conn.close()
    rows = _rows(courses["postgres"])
    with Gradebook(url, COURSE_ID) as gb:
        for student in expect:
            nb = gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student)
            stored = {g.name: float(g.score) for g in nb.grades}
            assert stored == {k.split(":", 1)[1]: float(v) for k, v in rows[student].items() if k.startswith(NOTEBOOK + ":")}
            assert float(gb.find_submission(ASSIGNMENT, student).score) == float(rows[student]["score"])


def test_nothing_was_written_to_sqlite(graded):
    courses, *_ = graded
    assert not [p for p in courses["postgres"].rglob("*") if p.suffix in (".db", ".sqlite", ".sqlite3") or p.name.startswith("gradebook")]
    assert (courses["sqlite"] / "gradebook.db").is_file()  # the default, for comparison


def test_postgresql_and_sqlite_give_the_same_grades_csv(graded):
    courses, *_ = graded
    assert (courses["postgres"] / "grades.csv").read_text(encoding="utf-8") == (courses["sqlite"] / "grades.csv").read_text(encoding="utf-8")
