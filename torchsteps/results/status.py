"""The outcome of grading one submission, and where the outcomes of a run are kept.

The grading driver (:mod:`torchsteps.grading`) writes these records; the export, the terminal table and
the report read them. Statuses are an ``enum`` whose values are the strings written to ``grades.csv``.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["Status", "SubmissionResult", "STATUS_FILE", "printable", "write_status", "read_status"]

# Where the status of each submission is kept for the export (beside nbgrader's own folders).
STATUS_FILE = "autograded/grading_status.json"


class Status(str, enum.Enum):
    """What happened to one student's submission of one assignment (the ``status`` column of ``grades.csv``)."""

    GRADED = "graded"  # scores are in the gradebook
    ERROR = "error"  # the submission could not be graded; the reason says why
    NOT_SUBMITTED = "not submitted"  # a roster student with nothing in submitted/

    def __str__(self) -> str:  # f-strings and csv write the plain value
        return self.value


@dataclass
class SubmissionResult:
    """The outcome of autograding one student's submission of one assignment.

    ``status`` is :attr:`Status.GRADED` (scores are in the gradebook), :attr:`Status.ERROR`
    (``reason`` says why the submission could not be graded) or :attr:`Status.NOT_SUBMITTED` (no folder
    for the assignment in ``submitted/``: nothing to grade, not an error). ``notes`` hold problems that did not stop
    grading, such as a missing notebook (scored 0). ``flags`` are possible tampering found by
    :class:`torchsteps.nbgrader_plugins.tamper.FlagTampering` (the submission then needs manual review).
    ``seconds`` is the wall time of autograde + feedback; ``finished`` when it ended (seconds since
    the epoch), to tell whether a later autograde (a stock ``nbgrader autograde --student``) replaced it.
    ``unchanged``: this run kept the result of an earlier one, because the submission, the source and the
    config did not change (:mod:`torchsteps.grading.incremental`).
    """

    student_id: str
    assignment_id: str
    status: Status
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    seconds: float = 0.0
    finished: float = 0.0
    unchanged: bool = False

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    def make_printable(self) -> SubmissionResult:
        """``reason``, ``notes`` and ``flags`` with every undecodable byte of a file name written ``\\xff``;
        returns self. A name that is not UTF-8 (``zz\\xff.txt``) reaches the notes as a lone surrogate,
        which ``grades.csv``, the report and the terminal cannot encode (it stopped the export)."""
        self.reason = printable(self.reason)
        self.notes = [printable(n) for n in self.notes]
        self.flags = [printable(f) for f in self.flags]
        return self


def printable(text: str) -> str:
    """``text`` with lone surrogates (bytes of a file name that were not UTF-8) written as ``\\xNN``."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte ("\\ud800" from a notebook's JSON)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def write_status(root: str | Path, results: list[SubmissionResult], forget=frozenset()) -> Path:
    """Record the run's outcomes in ``<root>/`` :data:`STATUS_FILE` (JSON, one record per submission).

    Only earlier records of the same (assignment, student) are replaced: grading a second assignment, or
    one student, does not erase what the file says about the others. The ``(assignment, student)`` pairs
    of ``forget`` are removed.
    """
    path = Path(root) / STATUS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    new = {(r.assignment_id, r.student_id) for r in results} | set(forget)
    kept = [r for r in read_status(root) if (r.assignment_id, r.student_id) not in new]
    merged = sorted(kept + list(results), key=lambda r: (r.assignment_id, r.student_id))
    records = [{**asdict(r), "status": r.status.value} for r in merged]
    path.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return path


def read_status(root: str | Path) -> list[SubmissionResult]:
    """The outcomes written by :func:`write_status`; ``[]`` when grading never ran here."""
    path = Path(root) / STATUS_FILE
    if not path.is_file():
        return []
    known = set(SubmissionResult.__dataclass_fields__)  # records written by an older version may lack a field
    return [SubmissionResult(**{k: v for k, v in r.items() if k in known}).make_printable()  # older files may hold surrogates
            for r in json.loads(path.read_text(encoding="utf-8"))]
