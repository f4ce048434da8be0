"""Print the grades of a class as a table: students x exercises, with totals and reasons."""

from __future__ import annotations

from rich.console import Console
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
            cells.append("" if score is None else f"{score:g}")
        total = f"{row.score:g}/{row.max_score:g}"
        note = row.status if not row.reason else f"{row.status}: {row.reason}"
        if row.flags:
            note += f" [REVIEW: {len(row.flags)} possible tampering: {row.flags[0]}]"
        table.add_row(row.student_id, *cells, total, note)
    console.print(table)
    legend = ", ".join(f"{label}={c.notebook}:{c.grade_id} ({c.max_score:g})" for label, c in zip(labels, columns))
    console.print(f"[dim]Exercises: {legend}[/dim]")
