"""What a grading run leaves for the instructor: ``grades.csv`` and the HTML report, from the gradebook."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nbgrader.api import Gradebook
from nbgrader.apps.api import NbGraderAPI

from ..results.export import ExerciseColumn, GradeRow, collect_rows, write_rows_csv
from ..results.report import collect_report_data, write_reports

__all__ = ["RunOutputs", "write_outputs"]


@dataclass
class RunOutputs:
    csv_path: Path
    tables: list[tuple[str, list[ExerciseColumn], list[GradeRow]]]  # (assignment, columns, rows) per assignment graded
    report_path: Path | None

    @property
    def columns(self) -> list[ExerciseColumn]:
        """The columns of the first (often the only) assignment graded."""
        return self.tables[0][1]

    @property
    def rows(self) -> list[GradeRow]:
        return self.tables[0][2]


def write_outputs(api: NbGraderAPI, assignment_ids: str | list[str], *, report: bool = True) -> RunOutputs:
    """Write ``<course>/grades.csv`` and (with ``report``) the report for ``assignment_ids``.

    ``grades.csv`` holds every assignment of the gradebook (as ``nbgrader export`` would); the tables and
    the report cover ``assignment_ids`` (one page, or one per assignment and an index:
    :func:`torchsteps.results.report.write_reports`). Both come from the same rows
    (:func:`torchsteps.results.export.collect_rows`), read from the gradebook.
    """
    ids = [assignment_ids] if isinstance(assignment_ids, str) else list(assignment_ids)
    root = Path(api.coursedir.root)
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        everything = sorted({a.name for a in gb.assignments} | set(ids))
        collected = {a: collect_rows(gb, root, a) for a in everything}  # read once, for the file and the report
        csv_path = write_rows_csv([collected[a] for a in everything], root / "grades.csv")
        tables = [(a, *collected[a]) for a in ids]
    report_path = None
    if report:
        datas = [
            collect_report_data(columns, rows, course_id=api.coursedir.course_id, assignment_id=a,
                                autograded_dir=root / api.coursedir.autograded_directory)
            for a, columns, rows in tables
        ]
        report_path = write_reports(root, datas)
    return RunOutputs(csv_path, tables, report_path)
