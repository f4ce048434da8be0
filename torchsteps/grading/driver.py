"""Grade a class: generate the release, autograde every submission, write feedback.

Each step is one call of nbgrader's Python API (``NbGraderAPI``), the same the formgrader uses, so the
gradebook, ``autograded/`` and ``feedback/`` are exactly what the ``nbgrader`` commands would write.
What this layer adds: one submission's failure never stops the class, and every submission ends with a
status and a plain-language reason.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
import warnings
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from nbgrader.apps.api import NbGraderAPI
from nbgrader.utils import temp_attrs

from ..nbgrader_plugins.collect import collect_lms_downloads
from ..nbgrader_plugins.tamper import METADATA_KEY
from ..results.status import Status, SubmissionResult, printable, read_status, write_status
from .archives import write_feedback_archives
from .cluster import grade_on_cluster
from .course import creates_students, register_roster, roster_refusal
from .incremental import DigestStore, submission_digest
from .parallel import grade_in_parallel
from .release import release
from .staging import STAGING_DIR, UnreadableSubmission, folder_problem, stage_submission, submission_folder
from .submission_files import SubmissionLimits

__all__ = ["list_submissions", "grade_submission", "grade_class", "UnknownStudent"]


class UnknownStudent(ValueError):
    """A student id asked for (``--student``) that is neither in the gradebook nor a folder of ``submitted/``."""

# nbgrader's Gradebook.update_or_create_submission triggers SQLAlchemy autoflush warnings on every
# autograde of a registered student (nbgrader 0.9.6, harmless: the submission is saved); keep them
# out of the instructor's terminal.
warnings.filterwarnings("ignore", message=r"Object of type <Submitted\w+> not in session", module=r"nbgrader\.api")


def list_submissions(api: NbGraderAPI, assignment_id: str) -> list[str]:
    """Student ids with a ``submitted/<student>/<assignment_id>/`` folder, sorted.

    A student with a folder for another assignment only has not submitted this one: not listed. Ids are in
    Unicode normal form C: a folder copied from a Mac (``zoe`` + combining diaeresis, NFD) is the same
    student as the roster's ``zoë`` (:func:`submission_folder` finds it again).
    """
    submitted = Path(api.coursedir.root) / api.coursedir.submitted_directory
    if not submitted.is_dir():
        return []

    def submitted_this(p: Path) -> bool:
        try:
            return p.is_dir() and (p / assignment_id).is_dir()
        except OSError:  # a folder the grading user may not look into: listed, and its row says why
            return True

    return sorted({unicodedata.normalize("NFC", p.name) for p in submitted.iterdir() if not p.name.startswith(".") and submitted_this(p)})


def row_id(folder_name: str) -> str:
    """The id a student's row has: the folder's name, or for a name that is not UTF-8 (a lone surrogate from
    the file system) ``submitted/<name written with escapes>``, which no folder can be named (the ``/``),
    so that it never takes the row of a student whose folder is literally called ``zz\\xff``."""
    if printable(folder_name) == folder_name:
        return folder_name
    return "submitted/" + printable(folder_name.replace("\\", "\\\\"))  # "\\" doubled first: one id per name


def release_notebooks(api: NbGraderAPI, assignment_id: str) -> dict[str, dict]:
    """``{notebook name: released notebook (JSON)}``, to recognise the cells of a notebook saved without metadata."""
    folder = Path(api.coursedir.root) / api.coursedir.release_directory / assignment_id
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.ipynb"))}


_BOILERPLATE = (
    "There was an error processing assignment",
    "Please see the error log",
    "nbgrader autograde",
    "Removing failed",
)


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")
_NOTEBOOK_LINE = re.compile(r"^\[INFO\] (?:Sanitizing|Autograding) (.+\.ipynb)\s*$")


def _reason_from(result: dict) -> str:
    """A one-line reason from nbgrader's captured log and traceback (``capture_log``'s dict).

    nbgrader logs the traceback of a failed submission indented under an ``[ERROR]`` line; the
    reason is its last exception line, prefixed with the notebook being processed at the time.
    """
    log = result.get("log", "")
    notebook, exception = "", ""
    for line in log.splitlines():
        match = _NOTEBOOK_LINE.match(line)
        if match:
            notebook = Path(match.group(1)).name
        elif _EXCEPTION_LINE.match(line.strip()):
            exception = line.strip()
    if not exception:
        errors = [
            line[len("[ERROR] "):].strip()
            for line in log.splitlines()
            if line.startswith("[ERROR]") and not any(b in line for b in _BOILERPLATE)
        ]
        tb = [line.strip() for line in result.get("error", "").splitlines() if line.strip()]
        exception = (errors or tb or ["autograde failed without a message"])[-1]
    return (f"{notebook}: {exception}" if notebook else exception)[:500]


def _notes_from(log: str) -> list[str]:
    notes = []
    for line in log.splitlines():
        if line.startswith("[WARNING] No submitted file:"):
            notes.append("missing notebook " + Path(line.split(":", 1)[1].strip()).name + " (scored 0)")
        elif line.startswith("[WARNING] Skipping unknown notebook:"):
            notes.append("ignored extra notebook " + Path(line.split(":", 1)[1].strip()).name)
    return notes


def _tamper_flags(api: NbGraderAPI, assignment_id: str, student_id: str) -> list[str]:
    """The tampering findings FlagTampering stored in the autograded notebooks' metadata."""
    folder = Path(api.coursedir.root) / api.coursedir.autograded_directory / student_id / assignment_id
    flags = []
    for path in sorted(folder.glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        flags += [f"{path.stem}: {finding}" for finding in nb.metadata.get(METADATA_KEY, {}).get("tamper", [])]
    return flags


def expected_notebooks(api: NbGraderAPI, assignment_id: str) -> dict[str, frozenset[str]]:
    """``{notebook name: grade_ids of its source cells}`` of an assignment, from the gradebook."""
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        return {nb.name: frozenset(c.name for c in nb.source_cells) for nb in gb.find_assignment(assignment_id).notebooks}


def grade_submission(api: NbGraderAPI, assignment_id: str, student_id: str, known_students: set[str], expected=None, feedback: bool = True) -> SubmissionResult:
    """Autograde one submission and (with ``feedback``) generate its feedback; never raises for a bad submission.

    ``known_students``: the student ids of the gradebook (the roster). With nbgrader's
    ``c.Autograde.create_student = False`` anyone else gets an error, as stock autograde refuses them.
    nbgrader reads a staged copy (:mod:`torchsteps.grading.staging`), so ``submitted/`` is never written.
    """
    start = time.perf_counter()
    result = SubmissionResult(student_id, assignment_id, status=Status.ERROR)
    root = Path(api.coursedir.root)
    student_folder = submission_folder(root / api.coursedir.submitted_directory, student_id)
    folder = student_folder / assignment_id
    expected = expected if expected is not None else expected_notebooks(api, assignment_id)
    try:
        problem = folder_problem(student_folder, assignment_id)  # first: is_dir raises where the grader may not look
        if problem:
            raise UnreadableSubmission(problem)
        if not folder.is_dir():
            result.status = Status.NOT_SUBMITTED
            result.finished = time.time()
            return result
        refused = roster_refusal(api, student_id, known_students)
        if refused:
            raise UnreadableSubmission(refused)
        staged = root / STAGING_DIR / student_id / assignment_id
        try:
            result.notes = stage_submission(folder, staged, expected, release_notebooks(api, assignment_id),
                                            SubmissionLimits(config=api.config))
        except UnreadableSubmission as why:
            result.notes = list(getattr(why, "notes", []))  # what staging noted before it stopped (a link left out...)
            raise
        except (OSError, ValueError, TypeError, AttributeError, KeyError, RecursionError, MemoryError) as why:
            # one student's odd file never stops the class: a shape staging did not foresee is that row's reason
            raise UnreadableSubmission(f"the submission could not be read: {type(why).__name__}: {why}"[:500]) from None
        if student_folder.name != student_id:
            result.notes.append(f"folder '{student_folder.name}' ({len(student_folder.name)} code points) "
                                f"graded as roster id '{student_id}' (the same name in another Unicode form)")
        if not any(staged.glob("*.ipynb")):
            raise UnreadableSubmission(
                f"no notebook in submitted/{student_id}/{assignment_id} (expected {', '.join(f'{n}.ipynb' for n in sorted(expected))})"
            )
    except UnreadableSubmission as why:
        result.reason = str(why)
        result.seconds = time.perf_counter() - start
        result.finished = time.time()
        return result
    with temp_attrs(api.coursedir, submitted_directory=STAGING_DIR):
        graded = api.autograde(assignment_id, student_id, force=True, create=creates_students(api))
    result.notes += _notes_from(graded.get("log", ""))
    if not graded["success"]:
        result.reason = _reason_from(graded)
    else:
        result.flags = _tamper_flags(api, assignment_id, student_id)
        result.status = Status.GRADED
        if feedback:
            made = api.generate_feedback(assignment_id, student_id, force=True)
            if not made["success"]:
                result.notes.append("feedback not generated: " + _reason_from(made))
    result.seconds = time.perf_counter() - start
    result.finished = time.time()
    return result


def grade_class(api: NbGraderAPI, assignment_id: str, *, jobs: int = 1, feedback: bool = True, students=None,
                force: bool = False, on_progress=None, on_note=None, scheduler: str = "") -> list[SubmissionResult]:
    """Release ``assignment_id``, then autograde and give feedback to the submissions in ``submitted/``.

    The roster is the gradebook: the course's roster CSV is imported first with nbgrader's
    ``db student import`` (:func:`torchsteps.grading.course.register_roster`), and students added to the
    gradebook in any other way are graded as well. ``students``: only these student ids (default: every
    folder of ``submitted/``). Incremental: a submission whose files, the assignment's source and the
    config did not change since it was last graded keeps its grades (``unchanged``), unless ``force``
    (:mod:`torchsteps.grading.incremental`). A cell graded by hand is never reopened (``SaveAutoGradesKeepingManual``).

    With ``jobs`` > 1, submissions are graded in that many worker processes at once (each one runs
    nbgrader's API on its own submissions; every notebook still gets its own fresh sandboxed kernel,
    and the gradebook is shared through the database). Results come back in student order whatever
    the order of completion, and are the same as with ``jobs=1``.

    An LMS bulk download in ``downloaded/<assignment>/archive/`` is collected into ``submitted/``
    first (:func:`torchsteps.nbgrader_plugins.collect.collect_lms_downloads`); ``on_note(text)`` receives its notes.
    ``on_progress(done, total, result)`` is called after each submission. The statuses are merged into
    :data:`torchsteps.results.status.STATUS_FILE` for the export; with feedback, one zip per student is
    written (:func:`torchsteps.grading.archives.write_feedback_archives`).

    With ``scheduler`` (a Dask scheduler address, ``tcp://host:8786``), the submissions are graded by that
    cluster's workers instead, one task per submission (:mod:`torchsteps.grading.cluster`); ``jobs`` is then unused.

    Raises:
        UnknownStudent: if a student id of ``students`` is neither in the gradebook nor has a submission folder.
        RuntimeError: if the release itself cannot be generated (a problem of the course, not of a student).
        torchsteps.grading.course.RosterError: if the roster CSV cannot be imported.
    """
    known = register_roster(api)
    if on_note:
        on_note(f"Roster: {len(known)} students in the gradebook (the roster CSV is imported with nbgrader's `db student import`)")
    release(api, assignment_id)  # nbgrader generate_assignment, and the students' self-check wheel
    for note in collect_lms_downloads(api, assignment_id):
        if on_note:
            on_note(note)
    # NFC, as list_submissions gives them: `--student zoë` typed in either form is the same student
    selected = list_submissions(api, assignment_id) if students is None else sorted({unicodedata.normalize("NFC", s) for s in students})
    if students is not None:  # a mistyped id would otherwise stay in every later table as "not submitted"
        folders = set(list_submissions(api, assignment_id))
        unknown = [s for s in selected if s not in known and s not in folders]
        if unknown:
            raise UnknownStudent(
                f"no student {', '.join(repr(s) for s in unknown)}: not in the gradebook and no folder "
                f"submitted/<student>/{assignment_id}; check the spelling, or add them to the roster"
            )
    expected = expected_notebooks(api, assignment_id)
    store = DigestStore(api.coursedir, assignment_id)
    limits = SubmissionLimits(config=api.config)
    # A folder name that is not UTF-8 is no student id of the gradebook (text; asking the gradebook for it
    # stopped the export): its row says so, under the name written printable.
    undecodable = {s for s in selected if printable(s) != s}
    digests = {s: submission_digest(api.coursedir, assignment_id, s, limits, expected) for s in selected if s not in undecodable}
    results: dict[str, SubmissionResult] = {}

    def record(result: SubmissionResult) -> None:
        result.make_printable()  # file names that are not UTF-8, before the table, the store or the export sees them
        results[result.student_id] = result
        if not result.unchanged and result.student_id in digests:
            store.record(result, digests[result.student_id], feedback)
            store.save()  # at once: a run that is stopped keeps what it graded
        if on_progress:
            on_progress(len(results), len(selected), result)

    to_grade = []
    for student_id in selected:
        if student_id in undecodable:
            record(SubmissionResult(row_id(student_id), assignment_id, status=Status.ERROR, finished=time.time(), reason=(
                f"the folder name {row_id(student_id)} is not valid UTF-8, so it is no student id of the "
                "gradebook: rename the folder to the student's id")))
            continue
        kept = None if force else store.unchanged(student_id, digests[student_id], feedback)
        if kept is None:
            to_grade.append(student_id)
        else:
            record(SubmissionResult(**dict(kept, seconds=0.0, unchanged=True)))
    if scheduler:
        for result in grade_on_cluster(api, grade_submission, assignment_id, to_grade, known, expected, feedback,
                                       scheduler, on_note):
            record(result)
    elif jobs <= 1 or len(to_grade) <= 1:
        for student_id in to_grade:
            record(grade_submission(api, assignment_id, student_id, known, expected, feedback))
    else:
        for result in grade_in_parallel(api, grade_submission, assignment_id, to_grade, known, expected, jobs, feedback):
            record(result)
    store.save()
    ordered = [results[row_id(s)] for s in selected]
    # A folder removed since the last run: that student has now submitted nothing.
    folders = {row_id(s) for s in list_submissions(api, assignment_id)}
    earlier = [r.student_id for r in read_status(api.coursedir.root)
               if r.assignment_id == assignment_id and r.student_id not in results and r.student_id not in folders]
    gone = [SubmissionResult(s, assignment_id, status=Status.NOT_SUBMITTED, finished=time.time()) for s in earlier if s in known]
    # An id neither in the gradebook nor in submitted/ (a typo of an older run's --student) is dropped.
    write_status(api.coursedir.root, ordered + gone, forget={(assignment_id, s) for s in earlier if s not in known})
    if feedback:
        write_feedback_archives(api.coursedir, assignment_id)
    return ordered
