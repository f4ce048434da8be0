"""Command line: ``python -m torchsteps grade`` (what ``make grade`` runs) and helpers.

    python -m torchsteps [--course DIR] [--assignment NAME] grade
        (without --assignment: every assignment of the course's source/ folder, one after the other;
        grades.csv then holds every assignment in the gradebook, the report covers the ones graded)
    python -m torchsteps demo-class [--course DIR]      # regenerate submitted/ from the mistake catalogue
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ASSIGNMENT = "pytorch_basics"


def course_assignments(api) -> list[str]:
    """Names of the assignments in the course's ``source/`` folder (sub-folders holding a notebook), sorted."""
    source = Path(api.coursedir.root) / api.coursedir.source_directory
    if not source.is_dir():
        return []
    return sorted(p.name for p in source.iterdir() if p.is_dir() and not p.name.startswith(".") and any(p.glob("*.ipynb")))


def _grade(args) -> int:
    from nbgrader.api import Gradebook
    from rich.console import Console

    from .course import open_api
    from .export import collect_rows, write_csv
    from .grading import grade_class
    from .report import write_report
    from .table import print_grades

    from .sandbox import SandboxUnavailable, check_sandbox

    console = Console(width=200, stderr=False)
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
        mark = result.status if result.status != "error" else f"ERROR: {result.reason}"
        console.print(f"[{done}/{total}] {result.student_id}: {mark} ({result.seconds:.1f} s; {total - done} left, about {eta:.0f} s)")

    assignments = [args.assignment] if args.assignment else course_assignments(api)
    if not assignments:
        console.print(f"[bold red]No assignment to grade:[/bold red] no folder with a notebook in {api.coursedir.source_directory}/")
        return 2
    results = []
    for assignment in assignments:
        console.print(f"Grading '{assignment}' in {Path(api.coursedir.root)} ({args.jobs} at a time)")
        results += grade_class(api, assignment, jobs=args.jobs, feedback=not args.autograde_only,
                               on_progress=progress, on_note=lambda note: console.print(note, markup=False))
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        # Every assignment the gradebook knows, as `nbgrader export` would write it.
        everything = sorted(a.name for a in gb.assignments)
        csv_path = write_csv(gb, api.coursedir.root, everything, Path(api.coursedir.root) / "grades.csv")
        tables = [(a, *collect_rows(gb, api.coursedir.root, a)) for a in assignments]
    for assignment, columns, rows in tables:
        if len(tables) > 1:
            console.print(f"[bold]{assignment}[/bold]")
        print_grades(columns, rows, console)
    if not args.autograde_only:
        console.print(f"Report: {write_report(Path(api.coursedir.root), assignments, results)}")
    elapsed = time.perf_counter() - start
    graded = [r for r in results if r.status != "not submitted"]
    failed = [r for r in graded if r.status != "graded"]
    console.print(
        f"{len(graded)} submissions in {elapsed:.1f} s ({elapsed / max(len(graded), 1):.1f} s each); "
        f"{len(failed)} could not be graded. Grades: {csv_path}; feedback: {Path(api.coursedir.root) / 'feedback'}"
    )
    return 0


def _demo_class(args) -> int:
    from .demo_class import write_demo_class

    written = write_demo_class(Path(args.course), args.assignment or ASSIGNMENT)
    print(f"wrote {len(written)} submissions to {Path(args.course) / 'submitted'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchsteps", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", default=".", help="course directory (holds nbgrader_config.py); default: current folder")
    parser.add_argument("--assignment", default=None,
                        help="the assignment to grade (a folder of source/); default: every assignment in source/")
    sub = parser.add_subparsers(dest="command", required=True)
    grade = sub.add_parser("grade", help="release, autograde submitted/, feedback, grades.csv, table")
    grade.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="submissions graded at once (default: one per CPU core)")
    grade.add_argument("--autograde-only", action="store_true", help="no feedback and no report (what stock `nbgrader autograde` does; for benchmarks)")
    grade.add_argument("--unsandboxed", action="store_true", help="run student code without the sandbox (unsafe; only where none can be made)")
    sub.add_parser("demo-class", help="regenerate the demo class in submitted/ from the mistake catalogue")
    args = parser.parse_args(argv)
    handler = {"grade": _grade, "demo-class": _demo_class}[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
