"""Grades per exercise: one row per student and assignment, read from the gradebook; ``grades.csv``.

Stock ``nbgrader export`` writes one total per student and assignment. These rows hold the points of every
test cell (column ``<notebook>:<grade_id>``), the total, and the grading status with its reason, read from
:data:`torchsteps.results.status.STATUS_FILE`. ``nbgrader export`` writes them through
:class:`torchsteps.nbgrader_plugins.export.ExerciseCsvExport`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from .status import Status, read_status

__all__ = ["ExerciseColumn", "GradeRow", "exercise_columns", "collect_rows", "write_csv"]


@dataclass(frozen=True)
class ExerciseColumn:
    notebook: str
    grade_id: str
    max_score: float

    @property
    def key(self) -> str:
        return f"{self.notebook}:{self.grade_id}"


@dataclass
class GradeRow:
    student_id: str
    assignment_id: str
    status: Status
    scores: dict  # column key -> points (absent when not graded)
    score: float
    max_score: float
    reason: str = ""
    needs_manual_grade: bool = False
    flags: tuple[str, ...] = ()


def exercise_columns(gb: Gradebook, assignment_id: str) -> list[ExerciseColumn]:
    """The graded cells of an assignment, in notebook order, then cell order in the source notebook."""
    assignment = gb.find_assignment(assignment_id)
    columns = []
    for notebook in sorted(assignment.notebooks, key=lambda n: n.name):
        source_order = {c.name: i for i, c in enumerate(notebook.source_cells)}
        for cell in sorted(notebook.grade_cells, key=lambda c: source_order.get(c.name, 1 << 30)):
            columns.append(ExerciseColumn(notebook.name, cell.name, float(cell.max_score)))
    return columns


def collect_rows(gb: Gradebook, root: str | Path, assignment_id: str, student_ids=None) -> tuple[list[ExerciseColumn], list[GradeRow]]:
    """Per-exercise scores of every student (roster, graded or failed) for one assignment."""
    columns = exercise_columns(gb, assignment_id)
    max_total = sum(c.max_score for c in columns)
    status = {r.student_id: r for r in read_status(root) if r.assignment_id == assignment_id}
    students = sorted({s.id for s in gb.students} | set(status))
    if student_ids:
        students = [s for s in students if s in set(student_ids)]
    rows = []
    for student_id in students:
        result = status.get(student_id)
        row = GradeRow(student_id, assignment_id, Status.NOT_SUBMITTED, {}, 0.0, max_total)
        if result is not None and result.status is not Status.GRADED:
            row.status, row.reason = Status.ERROR, result.reason
        else:
            try:
                submission = gb.find_submission(assignment_id, student_id)
            except MissingEntry:
                submission = None
            if submission is not None:
                row.status = Status.GRADED
                for nb in submission.notebooks:
                    for grade in nb.grades:
                        row.scores[f"{nb.name}:{grade.name}"] = float(grade.score)
                row.score = float(submission.score)
                row.needs_manual_grade = bool(submission.needs_manual_grade)
                if result is not None and result.notes:
                    row.reason = "; ".join(result.notes)
                if result is not None and result.flags:
                    row.flags = tuple(result.flags)
        rows.append(row)
    return columns, rows


def write_csv(gb: Gradebook, root, assignment_ids, dest, student_ids=None) -> Path:
    """Write ``grades.csv``: a row per student and assignment, a column per test cell of any assignment."""
    tables = [collect_rows(gb, root, a, student_ids) for a in assignment_ids]
    keys = [c.key for columns, _ in tables for c in columns]
    dest = Path(dest)
    with dest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["assignment", "student_id", "status", *keys, "score", "max_score", "needs_manual_grade", "reason", "flags"])
        for _, rows in tables:
            for row in rows:
                writer.writerow([
                    row.assignment_id, row.student_id, row.status.value,
                    *[_fmt(row.scores.get(k)) for k in keys],
                    _fmt(row.score), _fmt(row.max_score), int(row.needs_manual_grade), row.reason,
                    " | ".join(row.flags),
                ])
    return dest


def _fmt(value):
    if value is None:
        return ""
    return f"{value:g}"
