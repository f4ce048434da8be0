"""Command line: ``python -m torchsteps grade`` (what ``make grade`` runs) and helpers.

    python -m torchsteps grade [--course DIR] [--assignment NAME]
    python -m torchsteps demo-class [--course DIR]      # regenerate submitted/ from the mistake catalogue
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

    console = Console(width=200, stderr=False)
    api = open_api(args.course)
    if args.unsandboxed:
        api.config.SandboxedKernelManager.allow_unsandboxed = True
    from .cluster import ClusterError, DaskCluster

    scheduler = args.scheduler if args.scheduler is not None else DaskCluster(config=api.config).scheduler
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
    start = time.perf_counter()

    def progress(done, total, result):
        elapsed = time.perf_counter() - start
        eta = elapsed / done * (total - done)
        mark = "graded" if result.status == "graded" else f"ERROR: {result.reason}"
        console.print(f"[{done}/{total}] {result.student_id}: {mark} ({result.seconds:.1f} s; {total - done} left, about {eta:.0f} s)")

    where = f"on the Dask cluster at {scheduler}" if scheduler else f"{args.jobs} at a time"
    console.print(f"Grading '{args.assignment}' in {Path(api.coursedir.root)} ({where})", markup=False)
    try:
        results = grade_class(api, args.assignment, jobs=args.jobs, feedback=not args.autograde_only,
                              on_progress=progress, on_note=lambda note: console.print(note, markup=False),
                              scheduler=scheduler)
    except ClusterError as why:
        console.print(f"[bold red]Cannot grade on the cluster:[/bold red] {why}")
        return 2
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        csv_path = write_csv(gb, api.coursedir.root, [args.assignment], Path(api.coursedir.root) / "grades.csv")
        columns, rows = collect_rows(gb, api.coursedir.root, args.assignment)
    print_grades(columns, rows, console)
    if not args.autograde_only:
        console.print(f"Report: {write_report(Path(api.coursedir.root), args.assignment, results)}")
    elapsed = time.perf_counter() - start
    failed = [r for r in results if r.status != "graded"]
    console.print(
        f"{len(results)} submissions in {elapsed:.1f} s ({elapsed / max(len(results), 1):.1f} s each); "
        f"{len(failed)} could not be graded. Grades: {csv_path}; feedback: {Path(api.coursedir.root) / 'feedback'}"
    )
    return 0


def _demo_class(args) -> int:
    from .demo_class import write_demo_class

    written = write_demo_class(Path(args.course), args.assignment)
    print(f"wrote {len(written)} submissions to {Path(args.course) / 'submitted'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchsteps", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", default=".", help="course directory (holds nbgrader_config.py); default: current folder")
    parser.add_argument("--assignment", default=ASSIGNMENT)
    sub = parser.add_subparsers(dest="command", required=True)
    grade = sub.add_parser("grade", help="release, autograde submitted/, feedback, grades.csv, table")
    grade.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="submissions graded at once (default: one per CPU core)")
    grade.add_argument("--autograde-only", action="store_true", help="no feedback and no report (what stock `nbgrader autograde` does; for benchmarks)")
    grade.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="grade on a Dask cluster: the scheduler's address, e.g. tcp://host:8786 (default: "
                       "c.DaskCluster.scheduler in nbgrader_config.py; empty: on this machine)")
    grade.add_argument("--unsandboxed", action="store_true", help="run student code without the sandbox (unsafe; only where none can be made)")
    sub.add_parser("demo-class", help="regenerate the demo class in submitted/ from the mistake catalogue")
    args = parser.parse_args(argv)
    handler = {"grade": _grade, "demo-class": _demo_class}[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
