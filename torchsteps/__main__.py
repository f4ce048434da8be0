"""Command line: ``python -m torchsteps grade`` (what ``make grade`` runs) and helpers.

    python -m torchsteps [--course DIR] grade [--assignment NAME] [--student ID ...] [--force]
        (without --assignment: every assignment of c.Roster.assignments, one after the other;
        grades.csv then holds every assignment in the gradebook, the report covers the ones graded)
    python -m torchsteps [--course DIR] release [--assignment NAME]     # release/ and the students' self-check wheel
    python -m torchsteps [--course DIR] demo-class                     # regenerate submitted/ from the mistake catalogue
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path


def _exit_now(code: int, message: bytes = b"") -> None:
    """End this process's sandboxes and remove their folders (they hold a student's files), then exit at
    once. The grading workers get SIGTERM as this process ends and do the same (torchsteps.grading.parallel).
    Not a normal exit: that would wait for the workers to finish the submissions queued to them. Whatever
    fails on the way (a closed pipe or terminal), the process exits."""
    try:
        for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second signal would cut this one short
            signal.signal(stop, signal.SIG_IGN)
        for say in (sys.stdout.flush, lambda: message and os.write(sys.stdout.fileno(), message)):
            try:
                say()
            # A closed pipe (`| head`, a killed `tee`) or terminal (SIGHUP), or the stream was already
            # writing when the signal came (RuntimeError: reentrant call): nothing more to say.
            except Exception:  # noqa: BLE001
                pass
        from .sandbox import close_all

        close_all(now=True)
    finally:
        os._exit(code)


def _end_on_signal(signum, frame) -> None:
    """SIGTERM (``kill``, a batch system's time limit) or SIGHUP (the terminal closed); exit handlers do not
    run on a signal."""
    _exit_now(128 + signum)


def _end_on_ctrl_c(signum, frame) -> None:
    """Ctrl-C: stop now. Not a KeyboardInterrupt: nbclient turns one into a "Canceled" error of the notebook
    being graded and grading goes on with the next student."""
    _exit_now(128 + signum, b"\nStopped (Ctrl-C). The submissions graded so far are kept; "
                            b"the next `grade` grades the rest.\n")


def _stop_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP end grading at once, sandboxes and their folders included. A signal the
    command was started to ignore stays ignored (``nohup``, Ctrl-C in a background job)."""
    signal.signal(signal.SIGTERM, _end_on_signal)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _end_on_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _end_on_ctrl_c)


def _grade(args) -> int:
    from rich.console import Console

    from .grading.cluster import ClusterError, DaskCluster
    from .grading.course import course_assignments, open_api
    from .grading.driver import UnknownStudent, grade_class
    from .grading.outputs import write_outputs
    from .grading.parallel import default_jobs
    from .results.status import Status
    from .results.table import print_grades
    from traitlets import TraitError

    from .sandbox import SandboxedKernelManager, SandboxUnavailable, check_sandbox
    from .sandbox.folders import RuntimeDirError, prepare_runtime_dir

    from .grading.archives import ARCHIVE_DIR
    from .grading.course import RosterError

    console = Console(stderr=False)  # the terminal's width (or COLUMNS); the table adapts to it
    jobs = args.jobs if args.jobs is not None else default_jobs()
    api = open_api(args.course)
    assignments = [args.assignment] if args.assignment else course_assignments(api)
    if not assignments:
        console.print(f"No assignment to grade: none in c.Roster.assignments, no folder with a notebook in {api.coursedir.source_directory}/")
        return 2
    if args.unsandboxed:
        api.config.SandboxedKernelManager.allow_unsandboxed = True
    scheduler = args.scheduler if args.scheduler is not None else DaskCluster(config=api.config).scheduler
    try:
        # The sandbox settings, checked once rather than per notebook; on a cluster, each worker's folder is
        # checked where it runs.
        manager = SandboxedKernelManager(config=api.config)
        if not scheduler:
            prepare_runtime_dir(manager.runtime_dir)
    except (TraitError, RuntimeDirError) as why:
        console.print(f"Cannot grade: {why}", markup=False, soft_wrap=True)
        return 2
    try:
        if not scheduler:  # on a cluster, each worker's sandbox is checked where it runs
            check_sandbox()
    except SandboxUnavailable as why:
        if not api.config.SandboxedKernelManager.get("allow_unsandboxed", False):
            console.print(
                f"[bold red]Cannot grade safely:[/bold red] {why}.\nStudent code would run with your permissions. "
                "Install bubblewrap (see README), or pass --unsandboxed to grade without a sandbox."
            )
            return 2
        console.print(f"[bold yellow]WARNING: grading WITHOUT a sandbox[/bold yellow] ({why})")
    _stop_on_signals()
    start = time.perf_counter()

    def progress(done, total, result):
        elapsed = time.perf_counter() - start
        eta = elapsed / done * (total - done)
        if result.unchanged:
            mark = "unchanged since it was graded (kept; --force grades it again)"
        else:
            mark = result.status.value if result.status is not Status.ERROR else f"ERROR: {result.reason}"
        console.print(f"[{done}/{total}] {result.student_id}: {mark} ({result.seconds:.1f} s; {total - done} left, about {eta:.0f} s)",
                      markup=False, highlight=False, soft_wrap=True)

    which = f"students {', '.join(args.student)}" if args.student else "every submission"
    results = []
    where = f"on the Dask cluster at {scheduler}" if scheduler else f"{jobs} at a time"
    for assignment in assignments:
        console.print(f"Grading '{assignment}' in {Path(api.coursedir.root)}: {which} ({where})", markup=False, soft_wrap=True)
        try:
            results += grade_class(api, assignment, jobs=jobs, feedback=not args.autograde_only, students=args.student,
                                   force=args.force, on_progress=progress, on_note=lambda note: console.print(note, markup=False),
                                   scheduler=scheduler)
        except ClusterError as why:
            console.print(f"[bold red]Cannot grade on the cluster:[/bold red] {why}")
            return 2
        except RosterError as why:
            console.print(f"Cannot read the roster: {why}", markup=False)
            return 2
        except UnknownStudent as why:
            console.print(f"Cannot grade: {why}", markup=False)
            return 2
    # every student's last outcome (results/status.py keeps them), not only those graded in this run
    outputs = write_outputs(api, assignments, report=not args.autograde_only)
    for assignment, columns, rows in outputs.tables:
        if len(outputs.tables) > 1:
            console.print(assignment, style="bold", markup=False)
        print_grades(columns, rows, console)
    if outputs.report_path:
        console.print(f"Report: {outputs.report_path}", markup=False, soft_wrap=True)
    elapsed = time.perf_counter() - start
    submitted = [r for r in results if r.status is not Status.NOT_SUBMITTED]
    failed = [r for r in submitted if r.status is not Status.GRADED]
    kept = [r for r in submitted if r.unchanged]
    console.print(
        f"{len(submitted)} submissions in {elapsed:.1f} s ({len(submitted) - len(kept)} run now, {len(kept)} unchanged and kept); "
        f"{len(failed)} could not be graded. Grades: {outputs.csv_path}; feedback: {Path(api.coursedir.root) / 'feedback'}, "
        f"one zip per student in {Path(api.coursedir.root) / ARCHIVE_DIR}/<assignment>/", markup=False, soft_wrap=True,
    )
    return 0


def _release(args) -> int:
    from .grading.course import default_assignment, open_api
    from .grading.release import release

    api = open_api(args.course)
    args.assignment = args.assignment or default_assignment(api.config)
    wheel = release(api, args.assignment)
    print(f"released {args.assignment}; the students' self-check: {wheel.name if wheel else 'none (no test cell)'}")
    return 0


def _demo_class(args) -> int:
    from .authoring.demo_submissions import write_demo_class
    from .grading.course import default_assignment, load_config

    args.assignment = args.assignment or default_assignment(load_config(args.course))
    written = write_demo_class(Path(args.course), args.assignment)
    print(f"wrote {len(written)} submissions to {Path(args.course) / 'submitted'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchsteps", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", default=".", help="course directory (holds nbgrader_config.py); default: current folder")
    parser.add_argument("--assignment", help="assignment to grade; default: every assignment of c.Roster.assignments "
                        "(or, when it lists none, every folder of source/ holding a notebook); also an option of each command")
    sub = parser.add_subparsers(dest="command", required=True)
    grade = sub.add_parser("grade", help="release, autograde submitted/, feedback, grades.csv, table")
    grade.add_argument("--assignment", default=argparse.SUPPRESS, help="the assignment to grade; default: every assignment of c.Roster.assignments")
    grade.add_argument("--student", action="append", metavar="ID",
                       help="grade only this student's submission (repeat for several; default: every folder of submitted/)")
    grade.add_argument("--force", action="store_true",
                       help="grade again submissions that did not change since they were last graded (default: only new or changed ones)")
    grade.add_argument("--jobs", "-j", type=int, default=None,
                       help="submissions graded at once (default: one per CPU core plus one: torchsteps.grading.parallel.default_jobs)")
    grade.add_argument("--autograde-only", action="store_true", help="no feedback and no report (what stock `nbgrader autograde` does; for benchmarks)")
    grade.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="grade on a Dask cluster: the scheduler's address, e.g. tcp://host:8786 (default: "
                       "c.DaskCluster.scheduler in nbgrader_config.py; empty: on this machine)")
    grade.add_argument("--unsandboxed", action="store_true", help="run student code without the sandbox (unsafe; only where none can be made)")
    rel = sub.add_parser("release", help="nbgrader generate_assignment, then the students' self-check wheel into release/")
    rel.add_argument("--assignment", default=argparse.SUPPRESS, help="default: the only one in c.Roster.assignments")
    demo = sub.add_parser("demo-class", help="regenerate the demo class in submitted/ from the mistake catalogue")
    demo.add_argument("--assignment", default=argparse.SUPPRESS, help="default: the only one in c.Roster.assignments")
    args = parser.parse_args(argv)
    handler = {"grade": _grade, "release": _release, "demo-class": _demo_class}[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
