"""What a grading run leaves for the instructor: ``grades.csv`` and the HTML report, from the gradebook."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nbgrader.api import Gradebook
from nbgrader.apps.api import NbGraderAPI

from ..results.export import ExerciseColumn, GradeRow, collect_rows, write_csv
from ..results.report import collect_report_data, write_report

__all__ = ["RunOutputs", "write_outputs"]


@dataclass
class RunOutputs:
    csv_path: Path
    columns: list[ExerciseColumn]
    rows: list[GradeRow]
    report_path: Path | None


def write_outputs(api: NbGraderAPI, assignment_id: str, *, report: bool = True) -> RunOutputs:
    """Write ``<course>/grades.csv`` and (with ``report``) ``<course>/report/index.html`` for ``assignment_id``.

    Both come from the same rows (:func:`torchsteps.results.export.collect_rows`), read once from the gradebook.
    """
    root = Path(api.coursedir.root)
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        csv_path = write_csv(gb, root, [assignment_id], root / "grades.csv")
        columns, rows = collect_rows(gb, root, assignment_id)
    report_path = None
    if report:
        data = collect_report_data(columns, rows, course_id=api.coursedir.course_id, assignment_id=assignment_id,
                                   autograded_dir=root / api.coursedir.autograded_directory)
        report_path = write_report(root, data)
    return RunOutputs(csv_path, columns, rows, report_path)
