"""Where a notebook's grading time goes, in one grading process (what one worker does).

    python -m torchsteps.authoring.profiling [--students 4] [--cprofile FILE]

Generates a small class (:func:`torchsteps.authoring.bench.generate_class`), grades it in this process, one
submission after another (what each ``-j`` worker or Dask worker does: :func:`torchsteps.grading.driver.grade_class`
with ``jobs=1``, feedback on), and prints the wall-clock time per notebook of each phase, measured by
timers wrapped around the methods that do it:

- warm parent start: the sandboxed process that imports torch once (``Zygote``; once per process);
- kernel start: forking the kernel and waiting until it answers (nbclient ``start_new_kernel`` and
  ``start_new_kernel_client``);
- cell execution: nbclient ``execute_cell`` (the student's cells and the setup cells, in the kernel);
- test cells: the hidden and visible tests, run in the sandboxed grader process (``TrustedExecute._run_test``
  and ``_run_setup``: forking the grader, the tests' own work, and the student's functions they call in the
  kernel, waited for by the host);
- grader parent start: the sandboxed grader process that imports torch once (``GraderParent``; once per process);
- kernel shutdown: nbclient ``_cleanup_kernel`` (and the sandbox reset);
- database: SQLAlchemy statements and commits (event hooks on the engine class);
- feedback rendering: ``NbGraderAPI.generate_feedback`` (nbconvert HTML);
- staging: :func:`torchsteps.grading.staging.stage_submission`;
- nbgrader bookkeeping: the rest of ``NbGraderAPI.autograde`` (app start-up, reading and writing notebooks,
  the other preprocessors), computed as autograde minus the phases inside it.

The first submission also pays the two warm parents' starts; they are counted apart. ``--cprofile`` writes a
``pstats`` file of the grading process (CPU time of the Python code, not of the kernels).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import inspect
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

__all__ = ["PhaseTimer", "PHASES", "phase_table", "main"]

# The phases printed, in order; "nbgrader bookkeeping" is what autograde spends outside the ones inside it.
PHASES = ("staging", "warm parent start", "grader parent start", "kernel start", "cell execution", "test cells",
          "kernel shutdown", "database", "nbgrader bookkeeping", "feedback rendering", "database (feedback)",
          "database (other)")
_INSIDE_AUTOGRADE = ("kernel start", "cell execution", "test cells", "kernel shutdown", "database")


class PhaseTimer:
    """Accumulates wall-clock seconds per phase; ``wrap`` times a (sync or async) method of a class."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.active: list[str] = []  # phases running now, outermost first
        self._undo: list = []

    def _add(self, phase: str, start: float) -> None:
        self.seconds[phase] += time.perf_counter() - start
        self.calls[phase] += 1
        if phase in self.active:
            self.active.remove(phase)

    def wrap(self, owner, name: str, phase: str) -> None:
        original = owner.__dict__[name]
        if inspect.iscoroutinefunction(original):
            @functools.wraps(original)
            async def timed(*args, **kwargs):
                start = time.perf_counter()
                self.active.append(phase)
                try:
                    return await original(*args, **kwargs)
                finally:
                    self._add(phase, start)
        else:
            @functools.wraps(original)
            def timed(*args, **kwargs):
                start = time.perf_counter()
                self.active.append(phase)
                try:
                    return original(*args, **kwargs)
                finally:
                    self._add(phase, start)
        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def time_database(self) -> None:
        """Time SQL statements and commits, as "database" inside autograde, "database (feedback)" inside feedback."""
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.orm import Session

        starts: list[float] = []

        def phase() -> str:
            if "autograde (all)" in self.active:
                return "database"
            return "database (feedback)" if "feedback rendering" in self.active else "database (other)"

        def before(*_args, **_kwargs):
            starts.append(time.perf_counter())

        def after(*_args, **_kwargs):
            if starts:
                start = starts.pop()
                if "commit" not in self.active:  # a commit's statements are in the commit's time
                    self.seconds[phase()] += time.perf_counter() - start

        event.listen(Engine, "before_cursor_execute", before)
        event.listen(Engine, "after_cursor_execute", after)
        original = Session.commit

        def commit(session):
            start = time.perf_counter()
            self.active.append("commit")
            try:
                return original(session)
            finally:
                self.active.remove("commit")
                self.seconds[phase()] += time.perf_counter() - start

        Session.commit = commit
        self._undo.append((Session, "commit", original))

    def undo(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def instrument(timer: PhaseTimer) -> None:
    from nbclient.client import NotebookClient
    from nbgrader.apps.api import NbGraderAPI

    from ..grading import driver
    from ..nbgrader_plugins.trusted_execute import TrustedExecute
    from ..sandbox import grader_process, warm

    # The synchronous entry points nbconvert's ExecutePreprocessor calls (nbclient's run_sync wrappers).
    timer.wrap(NotebookClient, "start_new_kernel", "kernel start")
    timer.wrap(NotebookClient, "start_new_kernel_client", "kernel start")
    timer.wrap(NotebookClient, "execute_cell", "cell execution")
    timer.wrap(NotebookClient, "_cleanup_kernel", "kernel shutdown")
    timer.wrap(TrustedExecute, "_run_test", "test cells")
    timer.wrap(TrustedExecute, "_run_setup", "test cells")
    timer.wrap(grader_process.GraderParent, "__init__", "grader parent start")
    timer.wrap(NbGraderAPI, "autograde", "autograde (all)")
    timer.wrap(NbGraderAPI, "generate_feedback", "feedback rendering")
    timer.wrap(warm.Zygote, "__init__", "warm parent start")
    timer.wrap(driver, "stage_submission", "staging")  # the name the driver calls
    timer.time_database()


def phase_table(seconds: dict[str, float]) -> dict[str, float]:
    """Seconds per printed phase (:data:`PHASES`) from a :class:`PhaseTimer`'s raw, nested figures.

    The warm parent starts inside the first kernel start and the grader parent inside the first test cell;
    each is taken out of the phase around it. Nbgrader bookkeeping is autograde minus the phases inside it.
    """
    table = {phase: seconds.get(phase, 0.0) for phase in PHASES}
    table["nbgrader bookkeeping"] = seconds.get("autograde (all)", 0.0) - sum(table[p] for p in _INSIDE_AUTOGRADE)
    table["kernel start"] -= table["warm parent start"]
    table["test cells"] -= table["grader parent start"]
    return table


def main(argv=None) -> int:
    from .bench import ASSIGNMENT, _course_copy, generate_class, sandbox_problem
    from .catalogue import by_notebook
    from ..grading.course import open_api
    from ..grading.driver import grade_class

    parser = argparse.ArgumentParser(prog="python -m torchsteps.authoring.profiling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", "-n", type=int, default=4)
    parser.add_argument("--cprofile", metavar="FILE", help="also write a cProfile pstats file of the grading process")
    parser.add_argument("--keep", action="store_true", help="keep the temporary course")
    args = parser.parse_args(argv)
    problem = sandbox_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="torchsteps-profile-"))
    try:
        generated = _course_copy(work / "generated", None, [], stock=True)
        students = generate_class(generated, args.students)
        course = _course_copy(work / "course", generated / "submitted", students, stock=False)
        api = open_api(course)
        timer = PhaseTimer()
        instrument(timer)
        profiler = cProfile.Profile() if args.cprofile else None
        first: list[float] = []
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        results = grade_class(api, ASSIGNMENT, jobs=1, feedback=True,
                              on_progress=lambda done, total, r: first.append(time.perf_counter()) if done == 1 else None)
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.cprofile)
        total = time.perf_counter() - start
        timer.undo()
        notebooks = len(results) * len(by_notebook())
        phases = phase_table(timer.seconds)
        print(f"{len(results)} submissions, {notebooks} notebooks, {total:.1f} s in all "
              f"({total / notebooks:.2f} s per notebook, first submission done after {first[0] - start:.1f} s)")
        print(f"  {'phase':<24} {'seconds':>8} {'s/notebook':>11} {'share':>6}")
        for phase in PHASES:
            seconds = phases[phase]
            print(f"  {phase:<24} {seconds:8.1f} {seconds / notebooks:11.3f} {seconds / total:6.0%}")
        other = total - timer.seconds.get("autograde (all)", 0.0) - sum(
            phases[p] for p in ("staging", "feedback rendering", "database (other)"))
        print(f"  {'rest (release, roster)':<24} {other:8.1f} {other / notebooks:11.3f} {other / total:6.0%}")
        print("  (database (feedback) is part of feedback rendering; the warm and grader parents start once per "
              "grading process)")
        if profiler:
            import pstats

            print(f"\ncProfile of the grading process ({args.cprofile}), top 25 by own time:")
            pstats.Stats(args.cprofile, stream=sys.stdout).sort_stats("tottime").print_stats(25)
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
