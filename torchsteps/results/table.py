"""Print the grades of a class as a table that fits the terminal, with reasons and flags listed under it.

The table holds only numbers and a one-word status per student; each reason (why a submission could
not be graded, notes) and each tampering flag is a line under the table, so long text never squeezes
the columns. When one column per exercise does not fit the terminal's width, the table shows one
column per notebook instead (its points out of its maximum), and says so.
"""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from .export import ExerciseColumn, GradeRow

__all__ = ["print_grades", "short_labels", "grades_table"]


def short_labels(columns: list[ExerciseColumn]) -> list[str]:
    """``1.1, 1.2, ..., 2.1``: notebook number and exercise number, to keep the table narrow."""
    notebooks = list(dict.fromkeys(c.notebook for c in columns))
    counters: dict[str, int] = {}
    labels = []
    for c in columns:
        counters[c.notebook] = counters.get(c.notebook, 0) + 1
        labels.append(f"{notebooks.index(c.notebook) + 1}.{counters[c.notebook]}")
    return labels


def _status(row: GradeRow) -> str:
    if row.flags:
        return "review"
    return row.status


def _table(headers: list[str], rows: list[GradeRow], cells_of, title: str) -> Table:
    table = Table(title=title, header_style="bold", pad_edge=False)
    table.add_column("student", no_wrap=True)
    for header in headers:
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("total", justify="right", style="bold", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for row in rows:
        total = f"{row.score:g}/{row.max_score:g}"
        if row.pending_points:
            total += f" (+{row.pending_points:g} pending)"
        table.add_row(row.student_id, *cells_of(row), total, _status(row))
    return table


def grades_table(columns: list[ExerciseColumn], rows: list[GradeRow], width: int) -> tuple[Table, str]:
    """The widest table that fits ``width`` characters: per exercise, else per notebook; and its legend."""
    labels = short_labels(columns)

    def per_exercise(row):
        # A cell waiting for its manual grade is pending, not 0.
        return ["pending" if c.key in row.pending else "" if row.scores.get(c.key) is None else f"{row.scores[c.key]:g}"
                for c in columns]

    table = _table(labels, rows, per_exercise, "Grades (points per exercise)")
    console = Console(width=width)
    natural = Measurement.get(console, console.options.update_width(1 << 16), table).maximum  # unsqueezed width
    if natural <= width:
        kinds = {"auto": "", "manual": ", by hand", "task": ", task, by hand"}
        legend = ", ".join(f"{label}={c.notebook}:{c.grade_id} ({c.max_score:g}{kinds.get(c.kind, '')})"
                           for label, c in zip(labels, columns))
        return table, f"Exercises: {legend}"
    notebooks = list(dict.fromkeys(c.notebook for c in columns))

    def per_notebook(row):
        cells = []
        for name in notebooks:
            keys = [c.key for c in columns if c.notebook == name]
            scores = [row.scores.get(k) for k in keys if k not in row.pending]
            text = "" if all(s is None for s in scores) else f"{sum(s or 0 for s in scores):g}"
            cells.append(text + ("+pending" if any(k in row.pending for k in keys) else ""))
        return cells

    table = _table([str(i + 1) for i in range(len(notebooks))], rows, per_notebook,
                   "Grades (points per notebook; widen the terminal for one column per exercise)")
    maxima = {n: sum(c.max_score for c in columns if c.notebook == n) for n in notebooks}
    legend = ", ".join(f"{i + 1}={n} ({maxima[n]:g})" for i, n in enumerate(notebooks))
    return table, f"Notebooks: {legend}"


def notes_lines(rows: list[GradeRow]) -> list[str]:
    """``student: reason`` and ``student: flag: ...`` lines, one per reason or flag."""
    lines = []
    for row in rows:
        if row.reason:
            lines.append(f"{row.student_id} ({row.status}): {row.reason}")
        if row.late_penalty or row.seconds_late:
            lines.append(f"{row.student_id} (late): penalty {row.late_penalty:g} of {row.raw_score:g}")
        for flag in row.flags:
            lines.append(f"{row.student_id} (review, possible tampering): {flag}")
    return lines


def print_grades(columns: list[ExerciseColumn], rows: list[GradeRow], console: Console | None = None) -> None:
    """Print the table at the console's width (the terminal's, or ``COLUMNS``), then the reasons and flags."""
    console = console or Console()
    table, legend = grades_table(columns, rows, console.width)
    console.print(table)
    console.print(legend, style="dim", markup=False, highlight=False)
    if any(row.pending for row in rows):
        console.print("pending = waiting for a manual grade in the formgrader (not counted as 0)", style="dim")
    lines = notes_lines(rows)
    if lines:
        console.print("[bold]Reasons and flags:[/bold]")
        for line in lines:
            console.print(f"- {line}", markup=False, highlight=False)
