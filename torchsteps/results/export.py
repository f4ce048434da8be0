"""Grades per exercise: one row per student and assignment, read from the gradebook; ``grades.csv``.

Stock ``nbgrader export`` (``CsvExportPlugin``) writes one total per student and assignment. This keeps
its columns, in its order and with its meaning (``score`` = ``raw_score`` minus the late penalty, never
below 0), and adds the grading status, one column per graded cell (``<notebook>:<grade_id>``: test
cells, manually graded answers and task cells), the points still waiting for a manual grade, and the
reason and review flags. Everything except the reason of a submission that could not be graded comes
from the gradebook, so the export tells the truth after a stock ``nbgrader autograde --student X``, a
second assignment or a manual grade in the formgrader. The reason comes from
:data:`torchsteps.results.status.STATUS_FILE` (nbgrader keeps no record of a failed autograde).

A cell still waiting for its manual grade is *pending*: its column holds ``pending`` (not 0) and its
points are in ``pending_points``. ``nbgrader export`` writes the same file through
:class:`torchsteps.nbgrader_plugins.export.ExerciseCsvExport` (set by
:func:`torchsteps.nbgrader_plugins.hardening.harden`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from ..constants import FLAG_COMMENT_PREFIX
from .status import Status, read_status

__all__ = ["ExerciseColumn", "GradeRow", "exercise_columns", "collect_rows", "write_csv", "write_rows_csv", "STOCK_COLUMNS",
           "PENDING"]

# nbgrader's CsvExportPlugin columns (nbgrader/plugins/export.py, 0.9), kept first and in this order.
STOCK_COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                 "raw_score", "late_submission_penalty", "score", "max_score"]
# What a cell column holds while the cell waits for a manual grade.
PENDING = "pending"


@dataclass(frozen=True)
class ExerciseColumn:
    """One graded cell of an assignment: a test cell (``kind="auto"``), a manually graded answer
    (``"manual"``, code or Markdown) or a task cell (``"task"``); ``max_score`` in points."""

    notebook: str
    grade_id: str
    max_score: float
    kind: str = "auto"

    @property
    def key(self) -> str:
        return f"{self.notebook}:{self.grade_id}"


@dataclass
class GradeRow:
    """One student's result for one assignment, as the gradebook has it.

    ``scores``: column key -> points, for cells that have a score; ``pending``: keys of the cells
    waiting for a manual grade (absent from ``scores``). ``score`` is stock nbgrader's: ``raw_score``
    minus ``late_penalty``, at least 0. ``status`` is ``graded``, ``error`` or ``not submitted``.
    """

    student_id: str
    assignment_id: str
    status: Status
    scores: dict  # column key -> points (absent when not graded or pending)
    score: float
    max_score: float
    reason: str = ""
    needs_manual_grade: bool = False
    flags: tuple[str, ...] = ()
    raw_score: float = 0.0
    late_penalty: float = 0.0
    seconds_late: float = 0.0
    timestamp: str = ""
    duedate: str = ""
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    pending: tuple[str, ...] = ()
    pending_points: float = 0.0
    flagged: bool = False
    notes: list[str] = field(default_factory=list)


def _cell_order(root: Path | None, assignment_id: str, notebook) -> dict[str, int]:
    """``{grade_id: position}`` in the instructor's notebook (``source/``, else ``release/``).

    The gradebook keeps no cell positions: its ``source_cells`` come back in insertion order from SQLite but
    in any order from PostgreSQL, so the notebook on disk is the one source of the order when it is there.
    """
    for folder in ("source", "release"):
        path = root / folder / assignment_id / f"{notebook.name}.ipynb" if root is not None else None
        if path is not None and path.is_file():
            try:
                cells = nbformat.read(str(path), as_version=nbformat.NO_CONVERT).cells
            except Exception:  # an unreadable notebook: fall back to the gradebook's order
                break
            ids = [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in cells]
            return {grade_id: i for i, grade_id in enumerate(ids) if grade_id}
    return {c.name: i for i, c in enumerate(notebook.source_cells)}


def exercise_columns(gb: Gradebook, assignment_id: str, root: str | Path | None = None) -> list[ExerciseColumn]:
    """The graded cells (grade and task cells) of an assignment, by notebook, then in the order of the cells in
    the course's notebook under ``root`` (the course folder; the gradebook's order without it)."""
    assignment = gb.find_assignment(assignment_id)
    columns = []
    for notebook in sorted(assignment.notebooks, key=lambda n: n.name):
        source_order = _cell_order(Path(root) if root is not None else None, assignment_id, notebook)
        solutions = {c.name for c in notebook.solution_cells}
        cells = [(c, "manual" if c.name in solutions else "auto") for c in notebook.grade_cells]
        cells += [(c, "task") for c in notebook.task_cells]
        for cell, kind in sorted(cells, key=lambda ck: (source_order.get(ck[0].name, 1 << 30), ck[0].name)):
            columns.append(ExerciseColumn(notebook.name, cell.name, float(cell.max_score), kind))
    return columns


def _text(value) -> str:
    return "" if value is None else str(value)


def _flags(submission) -> tuple[str, ...]:
    """Review flags of a submission, from the gradebook: FlagTampering's comments, or the bare flag."""
    flags = []
    for nb in sorted(submission.notebooks, key=lambda n: n.name):
        # In the notebook's cell order: the database returns comments in no fixed order.
        order = {c.name: i for i, c in enumerate(nb.notebook.source_cells)}
        found = [
            f"{nb.name}: {line[len(FLAG_COMMENT_PREFIX):]}"
            for comment in sorted(nb.comments, key=lambda c: order.get(c.cell.name, 1 << 30))
            for line in (comment.auto_comment or "").splitlines()
            if line.startswith(FLAG_COMMENT_PREFIX)
        ]
        if nb.flagged and not found:
            found = [f"{nb.name}: flagged in the formgrader"]
        flags += found
    return tuple(flags)


def _error_is_stale(result, root: Path, assignment_id: str) -> bool:
    """Whether a recorded failure was graded over since (e.g. by a stock ``nbgrader autograde --student``).

    nbgrader removes the autograded folder of a failed submission, so a folder newer than the record
    means a later autograde succeeded.
    """
    folder = root / "autograded" / result.student_id / assignment_id
    return folder.is_dir() and folder.stat().st_mtime > getattr(result, "finished", 0.0) > 0


def collect_rows(gb: Gradebook, root: str | Path, assignment_id: str, student_ids=None) -> tuple[list[ExerciseColumn], list[GradeRow]]:
    """Per-cell scores of every student (gradebook students, and anyone whose submission failed) for one assignment."""
    root = Path(root)
    columns = exercise_columns(gb, assignment_id, root)
    assignment = gb.find_assignment(assignment_id)
    max_total = float(assignment.max_score)
    status = {r.student_id: r for r in read_status(root) if r.assignment_id == assignment_id}
    students = {s.id: s for s in gb.students}
    ids = sorted(set(students) | set(status))
    if student_ids:
        ids = [s for s in ids if s in set(student_ids)]
    rows = []
    for student_id in ids:
        result = status.get(student_id)
        row = GradeRow(student_id, assignment_id, Status.NOT_SUBMITTED, {}, 0.0, max_total, duedate=_text(assignment.duedate))
        student = students.get(student_id)
        if student is not None:
            row.first_name, row.last_name, row.email = _text(student.first_name), _text(student.last_name), _text(student.email)
        try:
            submission = gb.find_submission(assignment_id, student_id)
        except MissingEntry:
            submission = None
        if result is not None and result.status is Status.ERROR and not _error_is_stale(result, root, assignment_id):
            row.status, row.reason = Status.ERROR, result.reason
        elif submission is not None:
            _fill_from_submission(row, submission)
            if result is not None and result.notes:
                row.notes = list(result.notes)
                row.reason = "; ".join(result.notes)
        rows.append(row)
    return columns, rows


def _fill_from_submission(row: GradeRow, submission) -> None:
    row.status = Status.GRADED
    for nb in submission.notebooks:
        for grade in nb.grades:
            key = f"{nb.name}:{grade.name}"
            if grade.manual_score is None and grade.auto_score is None and grade.needs_manual_grade:
                row.pending += (key,)
                row.pending_points += float(grade.max_score)
            else:
                row.scores[key] = float(grade.score)
    row.raw_score = float(submission.score)
    row.late_penalty = float(submission.late_submission_penalty or 0.0)
    row.score = max(0.0, row.raw_score - row.late_penalty)
    row.seconds_late = float(submission.total_seconds_late or 0.0)
    row.timestamp = _text(submission.timestamp)
    row.needs_manual_grade = bool(submission.needs_manual_grade)
    row.flagged = any(nb.flagged for nb in submission.notebooks)
    row.flags = _flags(submission)


def write_csv(gb: Gradebook, root, assignment_ids, dest, student_ids=None) -> Path:
    """Write ``grades.csv``: a row per student and assignment; stock columns, then a column per graded cell."""
    return write_rows_csv([collect_rows(gb, root, a, student_ids) for a in assignment_ids], dest)


def write_rows_csv(tables: list[tuple[list[ExerciseColumn], list[GradeRow]]], dest) -> Path:
    """Write ``grades.csv`` from :func:`collect_rows`'s ``(columns, rows)`` of each assignment, in order."""
    keys = [c.key for columns, _ in tables for c in columns]
    dest = Path(dest)
    with dest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*STOCK_COLUMNS, "status", *keys, "pending_points", "needs_manual_grade", "reason", "flags"])
        for _, rows in tables:
            for row in rows:
                writer.writerow([
                    row.assignment_id, row.duedate, row.timestamp, row.student_id, row.last_name, row.first_name,
                    row.email, _fmt(row.raw_score), _fmt(row.late_penalty), _fmt(row.score), _fmt(row.max_score),
                    row.status.value,
                    *[PENDING if k in row.pending else _fmt(row.scores.get(k)) for k in keys],
                    _fmt(row.pending_points), int(row.needs_manual_grade), row.reason, " | ".join(row.flags),
                ])
    return dest


def _fmt(value):
    if value is None:
        return ""
    return f"{value:g}"
