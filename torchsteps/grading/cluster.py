"""Grade on a Dask cluster: one task per submission, run by ``dask worker`` processes on other machines.

    python -m torchsteps grade --scheduler tcp://host:8786      (or c.DaskCluster.scheduler in nbgrader_config.py)

The instructor's process is a Dask client. It does what needs the course folder (release, roster, LMS
collection, listing ``submitted/``) and then submits one task per student to the scheduler. A task carries
the student's submitted files; the course itself (``nbgrader_config.py`` and ``source/<assignment>/``:
``checks.py`` and the notebooks) and the settings travel once per worker, scattered. On the worker the task
writes the submission into a private course folder, grades it end to end with
:func:`torchsteps.grading.driver.grade_submission` (staging, ``nbgrader autograde`` in the worker's sandbox with its
warm kernels, feedback), writes the scores into the shared gradebook, and returns the status and the
autograded notebook(s) and feedback, which the client writes into its own ``autograded/`` and
``feedback/``. So workers share no filesystem with the instructor's machine; they share the gradebook
database (PostgreSQL), which every worker must reach.

A worker needs: this package installed with its pinned dependencies (``pip install -r requirements.lock``
and ``pip install --no-deps .``, the same versions as the client), bubblewrap and util-linux (the
sandbox), the gradebook's network address. Run it with one thread per process (``--nthreads 1``): a
grading process grades one submission at a time with its own warm kernel parent and sandbox user.

When a worker dies in the middle of a submission, the scheduler runs that task again on another worker
(Dask's own resubmission of the tasks of a lost worker; after ``distributed.scheduler.allowed-failures``
deaths the task fails with ``KilledWorker`` and the student is listed with that reason). A rerun
overwrites what the dead one wrote (nbgrader's autograde with ``force``: one submission row per student,
one grade per cell), and a cluster-wide :class:`distributed.Lock` per student keeps two workers from
grading the same student into the gradebook at once. Every student ends with a result: graded, or an
error with a reason (including "no worker left").
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import threading
import time
import uuid
from fnmatch import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.apps.api import NbGraderAPI
from traitlets import Float, Unicode
from traitlets.config import Configurable

from ..constants import SELFCHECK_WHEEL_GLOB
from ..results.status import Status, SubmissionResult
from .course import CONFIG_FILE, load_config, open_api, roster_refusal
from .staging import STAGING_DIR, UnreadableSubmission, gradable_files, folder_problem, submission_folder
from .submission_files import SubmissionFiles, SubmissionLimits, list_submission, read_file

__all__ = ["DaskCluster", "ClusterError", "CourseBundle", "SubmittedFiles", "course_bundle", "grade_on_cluster", "grade_task"]

GradeOne = Callable[..., SubmissionResult]


class DaskCluster(Configurable):
    """Where to grade: ``c.DaskCluster.scheduler = "tcp://host:8786"`` (empty: on this machine)."""

    scheduler = Unicode("", help="address of a Dask scheduler (tcp://host:8786); empty grades locally").tag(config=True)
    no_worker_timeout = Float(
        600.0, help="seconds without any worker after which the submissions not yet graded are listed as not graded"
    ).tag(config=True)


class ClusterError(RuntimeError):
    """The cluster cannot grade this course as configured (e.g. a gradebook the workers cannot reach)."""


@dataclass(frozen=True)
class CourseBundle:
    """What a worker needs of the course, besides the submission: config, source files, settings.

    ``files`` maps paths relative to the course root to their bytes; ``digest`` names the worker's copy.
    """

    files: dict[str, bytes]
    assignment_id: str
    db_url: str
    roster_ids: frozenset[str]
    expected: dict[str, frozenset[str]]
    feedback: bool
    allow_unsandboxed: bool
    digest: str = field(default="")


@dataclass(frozen=True)
class SubmittedFiles:
    """One student's submission as a task carries it: ``files`` (relative path -> bytes), the ``folders`` at its
    top (empty ones too), and the ``notes`` naming what the client left out (links, files over the caps)."""

    files: dict[str, bytes]
    folders: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def _regular_files(folder: Path, listing: SubmissionFiles | None = None) -> dict[str, bytes]:
    """``{relative path: bytes}`` of the files of ``folder`` that grading takes: the instructor's folders whole
    (``listing=None``: no size cap), a submission as ``listing`` lists it (:func:`gradable_files`, capped).
    Links are never followed, nor special files opened (:mod:`torchsteps.grading.submission_files`)."""
    if listing is None:
        return {path: read_file(folder / path) for path, _size in list_submission(folder).taken}
    files = {}
    for path, _size in listing.taken:
        try:
            files[path] = read_file(folder / path, listing.limits.max_file_bytes if listing.limits else None)
        except OSError as why:  # the same reason as local staging gives
            raise UnreadableSubmission(f"could not read {path} from the submission: {why.strerror or why}") from None
    return files


def course_bundle(api: NbGraderAPI, assignment_id: str, roster_ids: set[str], expected, feedback: bool) -> CourseBundle:
    """The course as workers need it: ``nbgrader_config.py``, ``source/<assignment>/`` and the handed-out files
    of ``release/<assignment>/`` (``checks.py``: the sandbox copies them into the kernel's and the grader's
    working folder, :func:`torchsteps.nbgrader_plugins.execute.handed_out_files`; without them every test cell
    failed on the workers with ``No module named 'checks'``)."""
    root = Path(api.coursedir.root)
    source = Path(api.coursedir.format_path(api.coursedir.source_directory, ".", assignment_id))
    release = Path(api.coursedir.format_path(api.coursedir.release_directory, ".", assignment_id))
    files = {CONFIG_FILE: (root / CONFIG_FILE).read_bytes()}
    files.update({f"{api.coursedir.source_directory}/{assignment_id}/{k}": v for k, v in _regular_files(source).items()})
    if release.is_dir():
        files.update({f"{api.coursedir.release_directory}/{assignment_id}/{k}": v for k, v in _regular_files(release).items()
                      if not k.endswith(".ipynb") and not fnmatch(k.rsplit("/", 1)[-1], SELFCHECK_WHEEL_GLOB)})
    digest = hashlib.sha256()
    for name, data in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    digest.update(repr((assignment_id, api.coursedir.db_url, api.coursedir.course_id)).encode())
    return CourseBundle(
        files=files, assignment_id=assignment_id, db_url=api.coursedir.db_url, roster_ids=frozenset(roster_ids),
        expected={k: frozenset(v) for k, v in expected.items()}, feedback=feedback,
        allow_unsandboxed=bool(api.config.SandboxedKernelManager.get("allow_unsandboxed", False)),
        digest=digest.hexdigest()[:16],
    )


# --- On the worker -------------------------------------------------------------------------------------

_worker_lock = threading.Lock()  # one submission at a time per worker process (one sandbox, one nbgrader API)
_worker_apis: dict[str, NbGraderAPI] = {}


def _worker_api(bundle: CourseBundle, base: Path) -> NbGraderAPI:
    """This worker's private copy of the course for ``bundle`` (written on first use) and its nbgrader API."""
    api = _worker_apis.get(bundle.digest)
    if api is not None:
        return api
    root = base / f"course-{bundle.digest}"
    if root.exists():
        shutil.rmtree(root)
    for name, data in bundle.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    config = load_config(root)
    # The client's gradebook (shared by every worker), not the one the config would compute here.
    config.CourseDirectory.db_url = bundle.db_url
    if bundle.allow_unsandboxed:
        config.SandboxedKernelManager.allow_unsandboxed = True
    api = _worker_apis[bundle.digest] = open_api(root, config)
    return api


def _student_folders(api: NbGraderAPI, assignment_id: str, student_id: str) -> dict[str, Path]:
    """The folders of one student's submission in a course folder: on a worker, each is removed once the
    submission is graded (the worker keeps no student's files); on the client, ``autograded`` and
    ``feedback`` receive what the worker sent back."""
    root = Path(api.coursedir.root)
    return {
        "submitted": root / api.coursedir.submitted_directory / student_id / assignment_id,
        "staged": root / STAGING_DIR / student_id / assignment_id,  # the readable copy grading reads
        "autograded": root / api.coursedir.autograded_directory / student_id / assignment_id,
        "feedback": root / api.coursedir.feedback_directory / student_id / assignment_id,
    }


def grade_task(bundle: CourseBundle, grade_one: GradeOne, student_id: str,
               submission: SubmittedFiles | None) -> tuple[SubmissionResult, dict[str, dict[str, bytes]]]:
    """Run on a Dask worker: grade one student's submission; returns ``(result, {"autograded"|"feedback": files})``.

    ``grade_one`` is :func:`torchsteps.grading.driver.grade_submission` (passed in, sent by reference, so
    this module does not import the driver that imports it). ``submission``: the student's submitted files
    (``None``: no folder for the assignment was submitted); its notes come first on the row, where local
    staging puts them. Never raises for a bad submission.
    """
    from distributed import Lock, get_worker

    assignment_id = bundle.assignment_id
    with _worker_lock:
        api = _worker_api(bundle, Path(get_worker().local_directory) / "torchsteps")
        folders = _student_folders(api, assignment_id, student_id)
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)
        if submission is not None:
            folders["submitted"].mkdir(parents=True)
            for name in submission.folders:
                path = (folders["submitted"] / name).resolve()
                if folders["submitted"].resolve() in path.parents:
                    path.mkdir(parents=True, exist_ok=True)
            for name, data in submission.files.items():
                path = (folders["submitted"] / name).resolve()
                if folders["submitted"].resolve() not in path.parents:
                    continue  # never written outside the submission's folder
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        try:
            # The gradebook rows of one student are written by one worker at a time, cluster-wide.
            with Lock(f"torchsteps/{api.coursedir.course_id}/{assignment_id}/{student_id}"):
                result = grade_one(api, assignment_id, student_id, set(bundle.roster_ids),
                                   dict(bundle.expected), bundle.feedback)
            result.notes = [*(submission.notes if submission else ()), *result.notes]
            back = {kind: _regular_files(folders[kind]) for kind in ("autograded", "feedback") if folders[kind].is_dir()}
        finally:
            for folder in folders.values():
                shutil.rmtree(folder, ignore_errors=True)
    return result, back


# --- On the instructor's machine -----------------------------------------------------------------------


def _write_back(api: NbGraderAPI, assignment_id: str, student_id: str, back: dict[str, dict[str, bytes]]) -> None:
    folders = _student_folders(api, assignment_id, student_id)
    for kind in ("autograded", "feedback"):
        target = folders[kind]
        shutil.rmtree(target, ignore_errors=True)
        for name, data in back.get(kind, {}).items():
            path = (target / name).resolve()
            if target.resolve() not in path.parents:
                continue  # a file name from a submission never places a file outside its folder
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def _failed(student_id: str, assignment_id: str, reason: str) -> SubmissionResult:
    return SubmissionResult(student_id, assignment_id, status=Status.ERROR, reason=reason[:500])


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def dashboard_link(client) -> str:
    """The scheduler's dashboard address, or ``""`` when it serves none.

    The scheduler always serves HTTP (health, metrics); its dashboard pages need ``bokeh`` installed
    where the scheduler runs, so that is what is asked.
    """
    try:
        if "dashboard" in client.scheduler_info(n_workers=1).get("services", {}) and client.run_on_scheduler(_has_bokeh):
            return client.dashboard_link
    except Exception:  # noqa: BLE001 - the link is a convenience, never a reason to stop grading
        pass
    return ""


def _workers(client) -> dict:
    """``{worker: threads}`` now; none when the scheduler went away."""
    try:
        return client.nthreads()
    except Exception:  # noqa: BLE001 - a scheduler that went away counts as no worker
        return {}


def _read_submission(submitted: Path, student_id: str, assignment_id: str, limits: SubmissionLimits,
                     expected, refused: str | None = None) -> SubmittedFiles | None:
    """What a task carries of one student's submission: the files local staging would copy, with its notes
    (:func:`torchsteps.grading.staging.gradable_files`); None when no folder was submitted. The checks come
    in the order of :func:`torchsteps.grading.driver.grade_submission`, so a row says what a local run says:
    ``refused`` (:func:`torchsteps.grading.course.roster_refusal`) before any file is read.

    Raises:
        UnreadableSubmission: the folder is a link or cannot be looked into, the student is ``refused``, or a
            file cannot be read or is needed and over the caps.
    """
    student_folder = submission_folder(submitted, student_id)
    folder = student_folder / assignment_id
    problem = folder_problem(student_folder, assignment_id)
    if problem:
        raise UnreadableSubmission(problem)
    if not folder.is_dir():
        return None
    if refused:
        raise UnreadableSubmission(refused)
    try:
        listing = gradable_files(folder, limits, expected)
        return SubmittedFiles(files=_regular_files(folder, listing), folders=tuple(listing.folders),
                              notes=tuple(listing.notes()))
    except OSError as why:
        raise UnreadableSubmission(f"could not read the submission: {why.strerror or why}") from None


def grade_on_cluster(api: NbGraderAPI, grade_one: GradeOne, assignment_id: str, students: list[str], roster_ids: set[str],
                     expected, feedback: bool, scheduler: str, on_note=None) -> Iterator[SubmissionResult]:
    """Yield each student's result as its task finishes on the cluster at ``scheduler`` (completion order).

    ``grade_one(api, assignment_id, student_id, roster_ids, expected, feedback)`` grades one submission on a
    worker; it must be a module-level function (it is sent to the workers by reference).

    Raises:
        ClusterError: the gradebook is a SQLite file (workers on other machines cannot share it), or the
            scheduler cannot be reached.
    """
    from distributed import Client, wait
    from distributed.scheduler import KilledWorker

    if api.coursedir.db_url.startswith("sqlite"):
        raise ClusterError(
            "grading on a Dask cluster needs a gradebook every worker can reach, not a SQLite file: "
            "set TORCHSTEPS_DB_URL=postgresql://user:password@host/db (README: Grading on several machines)"
        )
    from .dask_plugins import SandboxCleanup

    settings = DaskCluster(config=api.config)
    try:
        client = Client(scheduler, timeout="30s")
    except OSError as why:
        raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {why}") from None
    try:
        client.register_plugin(SandboxCleanup())  # also on workers that join later
        link = dashboard_link(client)
        if on_note:
            on_note(f"Dask scheduler {scheduler}: {len(client.nthreads())} workers"
                    + (f"; dashboard: {link}" if link else ""))
        bundle = course_bundle(api, assignment_id, roster_ids, expected, feedback)
        bundle_future = client.scatter(bundle, broadcast=True, hash=False)
        submitted = Path(api.coursedir.root) / api.coursedir.submitted_directory
        limits = SubmissionLimits(config=api.config)
        queue = list(students)
        futures: dict = {}
        pending: set = set()
        no_workers_since = None
        lost = None  # why the scheduler can no longer be used: every student not yet back gets a row with it
        while (queue or pending) and lost is None:
            # A few tasks per worker thread in flight: each carries a submission (up to max_submission_mb), so
            # the client and the scheduler never hold the whole class at once.
            room = max(4, 2 * sum(_workers(client).values())) - len(pending)
            while queue and room > 0:
                student_id = queue[0]
                try:
                    submission = _read_submission(submitted, student_id, assignment_id, limits, expected,
                                                  roster_refusal(api, student_id, roster_ids))
                except UnreadableSubmission as why:  # its row says why, and the rest is graded
                    queue.pop(0)
                    yield _failed(student_id, assignment_id, str(why))
                    continue
                try:
                    future = client.submit(grade_task, bundle_future, grade_one, student_id, submission, pure=False,
                                           key=f"torchsteps-grade-{student_id}-{uuid.uuid4().hex[:12]}")
                except Exception as why:  # noqa: BLE001 - a closed client (the scheduler went away)
                    lost = why
                    break
                queue.pop(0)
                futures[future] = student_id
                pending.add(future)
                room -= 1
            if not pending or lost is not None:
                continue
            try:
                done, pending = wait(pending, timeout=5, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            except Exception as why:  # noqa: BLE001 - the client closed under the wait
                lost = why
                continue
            for future in done:
                student_id = futures.pop(future)
                try:
                    result, back = future.result()
                except KilledWorker as why:
                    yield _failed(student_id, assignment_id, f"not graded: the Dask workers grading it died repeatedly ({why})")
                except Exception as why:  # noqa: BLE001 - every student gets a row with the reason
                    yield _failed(student_id, assignment_id, f"not graded: the grading task failed on the cluster: {type(why).__name__}: {why}")
                else:
                    _write_back(api, assignment_id, student_id, back)
                    yield result
                with contextlib.suppress(Exception):
                    future.release()
            if pending and not done:
                if _workers(client):
                    no_workers_since = None
                elif no_workers_since is None:
                    no_workers_since = time.monotonic()
                elif time.monotonic() - no_workers_since > settings.no_worker_timeout:
                    lost = f"no Dask worker was connected to {scheduler} for {settings.no_worker_timeout:.0f} s"
        if lost is not None:
            reason = (f"not graded: {lost}" if isinstance(lost, str) else
                      f"not graded: the Dask scheduler at {scheduler} could no longer be used ({type(lost).__name__}: {lost})")
            for future in pending:
                with contextlib.suppress(Exception):
                    future.cancel()
                yield _failed(futures.pop(future), assignment_id, reason)
            for student_id in queue:
                yield _failed(student_id, assignment_id, reason)
    finally:
        client.close()
