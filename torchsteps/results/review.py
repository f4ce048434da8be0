"""What needs the instructor's attention after grading: data rows for the report, and minimal HTML.

Two report sections, computed from :func:`torchsteps.export.collect_rows` (the gradebook):

- :func:`review_items`: one item per submission that is flagged (possible tampering, or flagged in the
  formgrader), late (with its penalty), could not be graded, or waits for manual grades;
- :func:`student_rows`: one row per student and assignment: status, raw score, late penalty, score,
  points pending a manual grade, and how many flags.

The functions return plain data (dataclasses); the report's template (``templates/_attention.html.j2``)
shows them, autoescaped (reasons and flags quote student code).
"""

from __future__ import annotations

from dataclasses import dataclass

from .export import GradeRow
from .status import Status

__all__ = ["KINDS", "ReviewItem", "StudentRow", "review_items", "student_rows"]

# The order items are listed in: what blocks a grade first.
KINDS = ("ungradeable", "flagged", "late", "pending")


@dataclass(frozen=True)
class ReviewItem:
    """One reason to look at one submission: ``kind`` in :data:`KINDS`, ``detail`` in plain words."""

    assignment_id: str
    student_id: str
    kind: str
    detail: str


@dataclass(frozen=True)
class StudentRow:
    """One student's result for one assignment (points; ``score`` = ``raw_score`` - ``late_penalty``, at least 0)."""

    assignment_id: str
    student_id: str
    name: str
    status: str
    raw_score: float
    late_penalty: float
    score: float
    max_score: float
    pending_points: float
    flags: int
    late: bool


def _duration(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def review_items(rows: list[GradeRow]) -> list[ReviewItem]:
    """Every flagged, late, ungradeable or manually-graded-pending submission among ``rows``, by kind, then student."""
    items = []
    for row in rows:
        if row.status is Status.ERROR:
            items.append(ReviewItem(row.assignment_id, row.student_id, "ungradeable", row.reason or "no reason recorded"))
            continue
        if row.status is not Status.GRADED:
            continue
        for flag in row.flags:
            items.append(ReviewItem(row.assignment_id, row.student_id, "flagged", flag))
        if row.flagged and not row.flags:
            items.append(ReviewItem(row.assignment_id, row.student_id, "flagged", "flagged in the formgrader"))
        if row.seconds_late > 0:
            items.append(ReviewItem(
                row.assignment_id, row.student_id, "late",
                f"submitted {row.timestamp}, {_duration(row.seconds_late)} after the due date {row.duedate}; "
                f"late penalty {row.late_penalty:g} of {row.raw_score:g} points",
            ))
        if row.pending:
            items.append(ReviewItem(
                row.assignment_id, row.student_id, "pending",
                f"{row.pending_points:g} points wait for a manual grade: " + ", ".join(row.pending),
            ))
    return sorted(items, key=lambda i: (KINDS.index(i.kind), i.assignment_id, i.student_id))


def student_rows(rows: list[GradeRow]) -> list[StudentRow]:
    """One :class:`StudentRow` per row, by assignment then student."""
    out = [
        StudentRow(
            assignment_id=r.assignment_id, student_id=r.student_id,
            name=" ".join(p for p in (r.first_name, r.last_name) if p),
            status=r.status.value, raw_score=r.raw_score, late_penalty=r.late_penalty, score=r.score,
            max_score=r.max_score, pending_points=r.pending_points, flags=len(r.flags) or int(r.flagged),
            late=r.seconds_late > 0,
        )
        for r in rows
    ]
    return sorted(out, key=lambda s: (s.assignment_id, s.student_id))
