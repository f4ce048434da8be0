"""Command line: ``python -m torchsteps grade`` (what ``make grade`` runs) and helpers.

    python -m torchsteps [--course DIR] grade [--assignment NAME] [--student ID ...] [--force]
    python -m torchsteps [--course DIR] release [--assignment NAME]     # release/ and the students' self-check wheel
    python -m torchsteps [--course DIR] demo-class                     # regenerate submitted/ from the mistake catalogue
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ASSIGNMENT = "pytorch_basics"


def _grade(args) -> int:
    from nbgrader.api import Gradebook
    from rich.console import Console

    from .course import open_api
    from .export import collect_rows, write_csv
    from .grading import grade_class
    from .report import write_report
    from .table import print_grades

    from .sandbox import SandboxUnavailable, check_sandbox

    from .course import RosterError

    console = Console(stderr=False)  # the terminal's width (or COLUMNS); the table adapts to it
    api = open_api(args.course)
    if args.unsandboxed:
        api.config.SandboxedKernelManager.allow_unsandboxed = True
    try:
        check_sandbox()
    except SandboxUnavailable as why:
        if not api.config.SandboxedKernelManager.get("allow_unsandboxed", False):
            console.print(
                f"[bold red]Cannot grade safely:[/bold red] {why}.\nStudent code would run with your permissions. "
                "Install bubblewrap (see README), or pass --unsandboxed to grade without a sandbox."
            )
            return 2
        console.print(f"[bold yellow]WARNING: grading WITHOUT a sandbox[/bold yellow] ({why})")
    start = time.perf_counter()

    def progress(done, total, result):
        elapsed = time.perf_counter() - start
        eta = elapsed / done * (total - done)
        if result.unchanged:
            mark = "unchanged since it was graded (kept; --force grades it again)"
        else:
            mark = "graded" if result.status == "graded" else f"ERROR: {result.reason}"
        console.print(f"[{done}/{total}] {result.student_id}: {mark} ({result.seconds:.1f} s; {total - done} left, about {eta:.0f} s)",
                      markup=False, highlight=False)

    which = f"students {', '.join(args.student)}" if args.student else "every submission"
    console.print(f"Grading '{args.assignment}' in {Path(api.coursedir.root)}: {which} ({args.jobs} at a time)", markup=False)
    try:
        results = grade_class(api, args.assignment, jobs=args.jobs, feedback=not args.autograde_only, students=args.student,
                              force=args.force, on_progress=progress, on_note=lambda note: console.print(note, markup=False))
    except RosterError as why:
        console.print(f"Cannot read the roster: {why}", markup=False)
        return 2
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        csv_path = write_csv(gb, api.coursedir.root, [args.assignment], Path(api.coursedir.root) / "grades.csv")
        columns, rows = collect_rows(gb, api.coursedir.root, args.assignment)
    print_grades(columns, rows, console)
    if not args.autograde_only:
        # every student's last status (STATUS_FILE), not only those graded in this run
        console.print(f"Report: {write_report(Path(api.coursedir.root), args.assignment)}", markup=False)
    elapsed = time.perf_counter() - start
    failed = [r for r in results if r.status != "graded"]
    kept = [r for r in results if r.unchanged]
    from .archives import ARCHIVE_DIR

    console.print(
        f"{len(results)} submissions in {elapsed:.1f} s ({len(results) - len(kept)} run now, {len(kept)} unchanged and kept); "
        f"{len(failed)} could not be graded. Grades: {csv_path}; feedback: {Path(api.coursedir.root) / 'feedback'}, "
        f"one zip per student in {Path(api.coursedir.root) / ARCHIVE_DIR / args.assignment}", markup=False,
    )
    return 0


def _release(args) -> int:
    from .course import open_api
    from .release import release

    api = open_api(args.course)
    wheel = release(api, args.assignment)
    print(f"released {args.assignment} to {wheel.parent}; the students' self-check: {wheel.name}")
    return 0


def _demo_class(args) -> int:
    from .demo_class import write_demo_class

    written = write_demo_class(Path(args.course), args.assignment)
    print(f"wrote {len(written)} submissions to {Path(args.course) / 'submitted'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchsteps", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", default=".", help="course directory (holds nbgrader_config.py); default: current folder")
    sub = parser.add_subparsers(dest="command", required=True)
    grade = sub.add_parser("grade", help="release, autograde submitted/, feedback, grades.csv, table")
    grade.add_argument("--assignment", default=ASSIGNMENT, help=f"the assignment to grade (default: {ASSIGNMENT})")
    grade.add_argument("--student", action="append", metavar="ID",
                       help="grade only this student's submission (repeat for several; default: every folder of submitted/)")
    grade.add_argument("--force", action="store_true",
                       help="grade again submissions that did not change since they were last graded (default: only new or changed ones)")
    grade.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="submissions graded at once (default: one per CPU core)")
    grade.add_argument("--autograde-only", action="store_true", help="no feedback and no report (what stock `nbgrader autograde` does; for benchmarks)")
    grade.add_argument("--unsandboxed", action="store_true", help="run student code without the sandbox (unsafe; only where none can be made)")
    rel = sub.add_parser("release", help="nbgrader generate_assignment, then the students' self-check wheel into release/")
    rel.add_argument("--assignment", default=ASSIGNMENT)
    demo = sub.add_parser("demo-class", help="regenerate the demo class in submitted/ from the mistake catalogue")
    demo.add_argument("--assignment", default=ASSIGNMENT)
    args = parser.parse_args(argv)
    handler = {"grade": _grade, "release": _release, "demo-class": _demo_class}[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
