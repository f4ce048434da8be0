"""The demo class: committed, reproducible from the catalogue, and graded by `make grade` as expected."""

from __future__ import annotations

import csv
import html as html_lib
import re

import nbformat
import pytest

from conftest import ASSIGNMENT, REPO, copy_course, tree_digest
from torchsteps.authoring.demo_submissions import PROFILES, expected_scores, write_demo_class


def test_committed_demo_class_is_what_the_generator_writes(tmp_path):
    course = copy_course(tmp_path / "course", demo_class=False)
    write_demo_class(course, ASSIGNMENT)
    generated = tree_digest(course / "submitted")
    committed = tree_digest(REPO / "submitted")
    assert committed == generated, "submitted/ is stale: run `make demo-class` and commit it"


def test_demo_class_covers_the_profiles_the_course_promises():
    styles = [p.style for p in PROFILES.values()]
    assert len(PROFILES) >= 10
    assert styles.count("alternative") >= 2 and {"solution", "blank", "partial", "mistakes"} <= set(styles)
    assert any("raises" in p.kinds for p in PROFILES.values())


def _csv_rows(course):
    with (course / "grades.csv").open(newline="", encoding="utf-8") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def test_grades_csv_has_the_expected_totals(graded):
    course = graded["demo"].root
    rows = _csv_rows(course)
    expected = expected_scores(REPO, ASSIGNMENT)
    assert set(expected) <= set(rows)
    for student, per_notebook in expected.items():
        row = rows[student]
        assert row["status"] == "graded", f"{student}: {row['status']} {row['reason']}"
        assert float(row["score"]) == pytest.approx(sum(per_notebook.values())), f"{student} ({PROFILES[student].summary})"
        for notebook, points in per_notebook.items():
            columns = [k for k in row if k.startswith(notebook + ":")]
            assert columns, f"no columns for {notebook}"
            assert sum(float(row[k]) for k in columns) == pytest.approx(points), f"{student}/{notebook}"
    assert float(rows["ada"]["score"]) == float(rows["ada"]["max_score"]) > 0
    assert float(rows["dev"]["score"]) == 0


def test_grade_prints_the_table_and_progress(graded):
    out = graded["demo"].stdout
    assert f"[{len(PROFILES)}/{len(PROFILES)}]" in out
    for student in PROFILES:
        assert student in out
    # one column per exercise in a wide terminal, per notebook in 80 columns (rich's width without a terminal)
    assert re.search(r"Grades \(points per (exercise|notebook)", out) and "total" in out


def test_submitted_files_are_not_modified_by_grading(graded):
    for course in graded.values():
        assert tree_digest(course.root / "submitted") == course.submitted_before


def test_feedback_is_written_and_hides_hidden_tests(graded):
    course = graded["demo"].root
    source = {p.name: nbformat.read(str(p), as_version=4) for p in (REPO / "source" / ASSIGNMENT).glob("*.ipynb")}
    hidden_lines = {}
    for name, nb in source.items():
        regions = [c.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0] for c in nb.cells if "### BEGIN HIDDEN TESTS" in c.source]
        visible = "\n".join(c.source for c in nb.cells)
        for region in regions:
            visible = visible.replace(region, "")
        # lines only the hidden tests have (a line that a visible check also has may be shown); the bare
        # opening of a statement, such as `raise AssertionError(`, says nothing and is also in torch's own
        # tracebacks (a student's `.cuda()` on a CPU-only grader)
        hidden_lines[name] = {l.strip() for r in regions for l in r.splitlines()
                              if len(l.strip()) > 15 and l.strip() not in visible and not re.fullmatch(r"raise \w+\(", l.strip())}
    for student in PROFILES:
        for name in source:
            html = (course / "feedback" / student / ASSIGNMENT / name.replace(".ipynb", ".html")).read_text(encoding="utf-8")
            assert "HIDDEN TESTS" not in html
            text = html_lib.unescape(re.sub(r"<[^>]+>", "", html))
            leaked = [l for l in hidden_lines[name] if l in text]
            assert not leaked, f"feedback of {student}/{name} shows hidden test lines: {leaked[:3]}"


def test_cells_tagged_skip_execution_are_not_run_when_grading(graded):
    """The lesson's timing cell (tag ``skip-execution``, nbclient's) costs a 1024x1024 matmul six times per
    student and prints timings that differ on every run: grading leaves it unrun, everything else runs."""
    course = graded["demo"].root
    released = nbformat.read(str(REPO / "release" / ASSIGNMENT / "04_devices.ipynb"), as_version=4)
    tagged = [i for i, c in enumerate(released.cells) if "skip-execution" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "seconds_per_matmul" in released.cells[tagged[0]].source
    autograded = nbformat.read(str(course / "autograded" / "ada" / ASSIGNMENT / "04_devices.ipynb"), as_version=4)
    cell = next(c for c in autograded.cells if "seconds_per_matmul" in c.source)
    assert cell.outputs == [] and cell.execution_count is None
    from torchsteps.constants import is_test_cell

    ran = [c for c in autograded.cells if c.cell_type == "code" and c is not cell and not is_test_cell(c)]
    assert len(ran) >= 5 and all(c.execution_count is not None for c in ran)
