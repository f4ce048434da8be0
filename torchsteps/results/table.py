"""Print the grades of a class as a table: students x exercises, with totals and reasons."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .export import ExerciseColumn, GradeRow

__all__ = ["print_grades", "short_labels"]


def short_labels(columns: list[ExerciseColumn]) -> list[str]:
    """``1.1, 1.2, ..., 2.1``: notebook number and exercise number, to keep the table narrow."""
    notebooks = list(dict.fromkeys(c.notebook for c in columns))
    counters: dict[str, int] = {}
    labels = []
    for c in columns:
        counters[c.notebook] = counters.get(c.notebook, 0) + 1
        labels.append(f"{notebooks.index(c.notebook) + 1}.{counters[c.notebook]}")
    return labels


def print_grades(columns: list[ExerciseColumn], rows: list[GradeRow], console: Console | None = None) -> None:
    console = console or Console(width=200)
    labels = short_labels(columns)
    table = Table(title="Grades (points per exercise)", header_style="bold", pad_edge=False)
    table.add_column("student")
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("total", justify="right", style="bold")
    table.add_column("status / reason", overflow="fold", max_width=60)
    for row in rows:
        cells = []
        for c in columns:
            score = row.scores.get(c.key)
            # A cell waiting for its manual grade is pending, not 0.
            cells.append("pending" if c.key in row.pending else "" if score is None else f"{score:g}")
        total = f"{row.score:g}/{row.max_score:g}"
        if row.pending_points:
            total += f" (+{row.pending_points:g} pending)"
        note = row.status if not row.reason else f"{row.status}: {row.reason}"
        if row.late_penalty or row.seconds_late:
            note += f" [late: penalty {row.late_penalty:g} of {row.raw_score:g}]"
        if row.flags:
            note += f" [REVIEW: {len(row.flags)} possible tampering: {row.flags[0]}]"
        # Reasons quote file names and student code: never read as rich markup ("[late: ...]" would vanish).
        table.add_row(escape(row.student_id), *cells, total, escape(note))
    console.print(table)
    kinds = {"auto": "", "manual": ", by hand", "task": ", task, by hand"}
    legend = ", ".join(f"{label}={c.notebook}:{c.grade_id} ({c.max_score:g}{kinds.get(c.kind, '')})" for label, c in zip(labels, columns))
    console.print(f"Exercises: {legend}", markup=False, highlight=False, style="dim")
    if any(row.pending for row in rows):
        console.print("pending = waiting for a manual grade in the formgrader (not counted as 0)", style="dim")
