"""Grade several submissions at once: a pool of worker processes, each running nbgrader's API.

Stock ``nbgrader autograde`` grades one submission after another (parallel grading has been asked of it
since jupyter/nbgrader#174). Here each worker process opens the course once (config, nbgrader, the
gradebook) and then grades the submissions it is handed, one at a time, exactly as
:func:`torchsteps.grading.driver.grade_submission` does in the main process. Students never share a process
with each other: every notebook still runs in its own fresh kernel in its own sandbox. The workers share
the gradebook through the database (SQLite waits for a lock instead of failing, thanks to the
``timeout`` in ``db_url``; a PostgreSQL URL works the same way).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from nbgrader.apps.api import NbGraderAPI

from ..results.status import SubmissionResult
from ..sandbox import close_all as close_sandboxes
from .course import open_api

__all__ = ["default_jobs", "grade_in_parallel"]

GradeOne = Callable[..., SubmissionResult]

_worker_api: NbGraderAPI | None = None


def default_jobs() -> int:
    """Workers to run at once by default: one per CPU core this process may use, plus one.

    A worker spends about 13% of a notebook's time waiting on its kernel and grader processes (kernel
    start, the socket round trips), time another worker can use. Measured on 2 cores, 24 students
    (``--autograde-only``): 3 workers 0.480 and 0.505 s per notebook, 2 workers 0.524 and 0.528 s.
    """
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may run on (a container's share)
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return cores + 1


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _stop_with_parent(parent_pid: int) -> None:
    """Have the kernel send this worker SIGTERM when the grading command dies (Linux only).

    Without it, a ``grade`` killed by SIGTERM or SIGKILL (``kill``, a batch system's time limit) leaves its
    workers running: they are reparented to init and go on grading the submissions already queued to them.
    Ctrl-C relies on it too: workers ignore SIGINT and end with the command. The workers' kernels and grader
    processes follow the worker (``bwrap --die-with-parent``); :func:`_end_worker` also removes their
    folders, which hold the student's files. The signal comes when the *thread* that started the worker
    ends (prctl(2)): ``grade_in_parallel`` starts them from the thread that iterates it.
    """
    signal.signal(signal.SIGTERM, _end_worker)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):  # not Linux: no prctl
        return
    if os.getppid() != parent_pid:  # the command died before the line above took effect
        os._exit(128 + signal.SIGTERM)


def _end_worker(signum, frame) -> None:
    """SIGTERM in a worker: end its sandboxes and remove their folders, then exit (exit handlers do not run
    on a signal, and raising SystemExit here would be caught by the pool's loop, which then takes the
    next queued submission)."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM would cut the cleanup short
        close_sandboxes(now=True)
    finally:
        os._exit(128 + signum)


def _start_worker(root: str, config, parent_pid: int) -> None:
    global _worker_api
    # Ctrl-C and a closed terminal's SIGHUP reach the whole process group: the command stops, and its
    # workers get SIGTERM as it ends (a KeyboardInterrupt here would be caught by the pool's loop, which
    # then takes the next submission; SIGHUP would kill the worker without removing its folders).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _stop_with_parent(parent_pid)
    _worker_api = open_api(root, config)


def _grade(grade_one: GradeOne, assignment_id: str, student_id: str, known_students: set[str], expected, feedback: bool) -> SubmissionResult:
    return grade_one(_worker_api, assignment_id, student_id, known_students, expected, feedback)


def grade_in_parallel(api: NbGraderAPI, grade_one: GradeOne, assignment_id: str, students: list[str], known_students: set[str], expected, jobs: int, feedback: bool = True) -> Iterator[SubmissionResult]:
    """Yield each student's result as soon as it is ready (in completion order).

    ``grade_one(api, assignment_id, student_id, known_students, expected, feedback)`` grades one submission in a
    worker; it must be a module-level function (it is sent to the workers by reference).
    """
    # "spawn": workers start from a clean interpreter, not a copy of the main process's state
    # (open database connections, event loops, threads).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_start_worker,
                             initargs=(str(api.coursedir.root), api.config, os.getpid())) as pool:
        futures = [pool.submit(_grade, grade_one, assignment_id, s, known_students, expected, feedback) for s in students]
        for future in as_completed(futures):
            yield future.result()
