"""``nbgrader export`` plugin: the per-exercise ``grades.csv`` (see :mod:`torchsteps.results.export`).

Set in ``nbgrader_config.py`` as ``c.ExportApp.plugin_class``, so ``nbgrader export`` writes the same file
as ``make grade``.
"""

from __future__ import annotations

from pathlib import Path

from nbgrader.api import Gradebook
from nbgrader.plugins import ExportPlugin

from ..results.export import write_csv

__all__ = ["ExerciseCsvExport"]


class ExerciseCsvExport(ExportPlugin):
    """``nbgrader export`` plugin: stock columns, then the status and one column per graded cell."""

    def export(self, gradebook: Gradebook) -> None:
        dest = Path(self.to or "grades.csv")
        coursedir = getattr(self.parent, "coursedir", None)  # ExportApp creates the plugin with parent=self
        root = Path(coursedir.root) if coursedir is not None else Path.cwd()
        assignments = self.assignment or [a.name for a in gradebook.assignments]
        write_csv(gradebook, root, assignments, dest, self.student)
        self.log.info("Exported per-exercise grades to %s", dest)
