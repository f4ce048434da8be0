"""Facts more than one layer needs, written once.

Kinds of notebook cell follow nbgrader's own predicates (``nbgrader.utils``): a *test cell* is a grade
cell that is not a solution cell (nbgrader's "Autograder tests"); an *answer cell* is a solution cell.
"""

from __future__ import annotations

from nbgrader import utils as _nbgrader_utils

__all__ = ["is_test_cell", "is_answer_cell", "FLAG_COMMENT_PREFIX", "SELFCHECK_WHEEL_GLOB"]

# How a review flag's comment on a cell starts (``Comment.auto_comment`` in the gradebook): written by
# nbgrader_plugins.tamper.FlagTampering, read back by results.export for grades.csv and the report.
FLAG_COMMENT_PREFIX = "Flagged for review: "


def is_test_cell(cell) -> bool:
    """A code cell graded by running it (nbgrader's *Autograder tests*): ``grade`` and not ``solution``."""
    return cell.get("cell_type") == "code" and _nbgrader_utils.is_grade(cell) and not _nbgrader_utils.is_solution(cell)


def is_answer_cell(cell) -> bool:
    """A cell where the student writes (nbgrader's solution cells, autograded or manually graded)."""
    return _nbgrader_utils.is_solution(cell)


# The students' self-check wheel that the release step adds to release/<assignment>/ (torchsteps.grading.release):
# handed out to students, but not one of the assignment's own files (not in source/, not needed by a kernel).
SELFCHECK_WHEEL_GLOB = "torchsteps_selfcheck-*.whl"
