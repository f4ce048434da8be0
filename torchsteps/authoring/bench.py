"""Benchmark: stock ``nbgrader autograde`` against ``python -m torchsteps grade``, side by side in one run.

    python -m torchsteps.authoring.bench [--students 100] [--stock-sample 25] [--scaling 25,50,100,300] [--jobs N]

Generates a class from the mistake catalogue (each exercise answered with the instructor's answer, an
alternative or a mistake, chosen with a fixed seed), grades the same submissions twice in two copies of
the course — once with stock nbgrader (its own CLI, stock preprocessors, one submission at a time, a
fresh kernel per notebook) and once with ours (parallel workers, sandboxed warm kernels) — checks that
every test cell got the same score from both, and prints seconds per submission and per notebook and the
ratio. Stock is slow (about 20 s a submission here), so on a large class it grades a stated sample, the
first ``--stock-sample`` students, and the figures compared are per submission. Feedback and the report
are left out of both timings (stock autograde does not make them); ours is then timed once more as
``make grade`` runs it, with feedback and the report, to show what they add. Last, it grades subsets
(and supersets) with ours to show how the time grows with the class size.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

from ..grading.course import default_assignment, load_config
from ..grading.parallel import default_jobs
from .catalogue import by_notebook
from .demo_submissions import instructor_answers
from .submissions import fill_solutions

REPO = Path(__file__).resolve().parents[2]
_CONFIG = load_config(REPO)
ASSIGNMENT = default_assignment(_CONFIG)
COURSE_ID = _CONFIG.CourseDirectory.course_id
STOCK_CONFIG = """\
c = get_config()
c.CourseDirectory.root = {root!r}
c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.db_url = "sqlite:///{root}/gradebook.db"
"""


def generate_class(course: Path, students: int, seed: int = 2026) -> list[str]:
    """Write ``students`` submissions into ``course/submitted`` from the catalogue; returns their ids."""
    import torch

    cuda = torch.cuda.is_available()
    rng = random.Random(seed)
    ids = [f"s{i:04d}" for i in range(students)]
    for name, catalogue in by_notebook().items():
        source = nbformat.read(str(course / "source" / ASSIGNMENT / f"{name}.ipynb"), as_version=4)
        release = nbformat.read(str(course / "release" / ASSIGNMENT / f"{name}.ipynb"), as_version=4)
        solutions = instructor_answers(source)
        for student in ids:
            answers = dict(solutions)
            for exercise in catalogue.exercises:
                roll = rng.random()
                mistakes = [m for m in exercise.mistakes if m.caught_on_cuda or not cuda]
                if roll < 0.25 and mistakes:
                    answers[exercise.solution_id] = rng.choice(mistakes).code
                elif roll < 0.45 and exercise.alternatives:
                    answers[exercise.solution_id] = rng.choice(exercise.alternatives).code
            out = course / "submitted" / student / ASSIGNMENT / f"{name}.ipynb"
            out.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(fill_solutions(release, answers), str(out))
    return ids


def _course_copy(dst: Path, submissions: Path | None, students: list[str], stock: bool) -> Path:
    dst.mkdir(parents=True)
    for folder in ("source", "release"):
        shutil.copytree(REPO / folder, dst / folder)
    if submissions is not None:
        (dst / "submitted").mkdir()
        for student in students:
            shutil.copytree(submissions / student, dst / "submitted" / student)
    if stock:
        (dst / "nbgrader_config.py").write_text(STOCK_CONFIG.format(root=str(dst), course_id=COURSE_ID))
    else:
        shutil.copy(REPO / "nbgrader_config.py", dst / "nbgrader_config.py")
        (dst / "students.csv").write_text("id\n" + "".join(f"{s}\n" for s in students), encoding="utf-8")
    return dst


def _run(command: list[str], cwd: Path) -> float:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed


def grade_stock(course: Path) -> float:
    """Seconds for stock ``nbgrader generate_assignment`` + ``nbgrader autograde`` of the whole class."""
    nbgrader = [sys.executable, "-m", "nbgrader"]
    _run([*nbgrader, "generate_assignment", ASSIGNMENT, "--force"], course)
    return _run([*nbgrader, "autograde", ASSIGNMENT, "--force"], course)


def grade_ours(course: Path, jobs: int, feedback: bool = False) -> float:
    """Seconds for ``python -m torchsteps grade --autograde-only`` (with ``feedback``: as ``make grade``) of the class."""
    only = [] if feedback else ["--autograde-only"]
    return _run([sys.executable, "-m", "torchsteps", "--course", str(course), "grade", *only, "-j", str(jobs)], course)


def cell_scores(course: Path) -> dict[tuple[str, str, str], float]:
    """``{(student, notebook, grade_id): score}`` of every graded cell in the course's gradebook."""
    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        for submission in gb.find_assignment(ASSIGNMENT).submissions:
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    scores[(submission.student.id, notebook.name, grade.name)] = float(grade.score)
    return scores


def _line(name: str, seconds: float, students: int, notebooks: int) -> str:
    return (f"{name:<6}: {seconds:8.1f} s for {students:4d} students  {seconds / students:6.2f} s/submission  "
            f"{seconds / students / notebooks:5.2f} s/notebook")


def sandbox_problem() -> str:
    """Why ours cannot grade here ("" when it can): a timing of kernels that never start would be meaningless.

    The benchmark and the profiler time the sandboxed kernels that ``grade`` uses; without bubblewrap every
    notebook would fail to start and the figures (and "N differ") would describe errors, not grading.
    """
    from ..sandbox import SandboxUnavailable, check_sandbox

    try:
        check_sandbox()
    except SandboxUnavailable as why:
        return f"cannot time grading here: {why}. Install bubblewrap and util-linux (see README) and run it again."
    return ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchsteps.authoring.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", "-n", type=int, default=100)
    parser.add_argument("--stock-sample", type=int, default=25,
                        help="students graded by stock nbgrader (the first ones of the class; 0: the whole class)")
    parser.add_argument("--scaling", default="25,50,100,300", help="class sizes graded with ours to show scaling ('' to skip)")
    parser.add_argument("--no-feedback-run", action="store_true", help="skip timing ours with feedback and the report")
    parser.add_argument("--jobs", "-j", type=int, default=default_jobs(), help="workers (default: as `grade`, one per core plus one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary courses")
    args = parser.parse_args(argv)
    problem = sandbox_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="torchsteps-bench-"))
    try:
        sizes = [int(n) for n in args.scaling.split(",") if n]
        generated = _course_copy(work / "generated", None, [], stock=True)
        ids = generate_class(generated, max([args.students] + sizes))
        notebooks = len(by_notebook())
        print(f"{len(ids)} students x {notebooks} notebooks generated from the catalogue; {args.jobs} jobs; in {work}")

        class_ids = ids[: args.students]
        sample = class_ids[: args.stock_sample] if 0 < args.stock_sample < len(class_ids) else class_ids
        ours = _course_copy(work / "ours", generated / "submitted", class_ids, stock=False)
        t_ours = grade_ours(ours, args.jobs)
        print(_line("ours", t_ours, len(class_ids), notebooks), flush=True)
        stock = _course_copy(work / "stock", generated / "submitted", sample, stock=True)
        t_stock = grade_stock(stock)
        note = f"  (stock on a sample: the first {len(sample)} of {len(class_ids)} students)" if len(sample) < len(class_ids) else ""
        print(_line("stock", t_stock, len(sample), notebooks) + note, flush=True)
        a = cell_scores(stock)
        b = {k: v for k, v in cell_scores(ours).items() if k[0] in set(sample)}
        differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        print(f"grades: {len(a)} cells graded by stock, the same {len(b)} by ours, {len(differ)} differ")
        for key in differ[:20]:
            print(f"  {key}: stock {a.get(key)}, ours {b.get(key)}")
        ratio = (t_stock / len(sample)) / (t_ours / len(class_ids))
        print(f"ratio: ours is {ratio:.1f}x faster per submission than stock nbgrader autograde")

        if not args.no_feedback_run:
            full = _course_copy(work / "ours-feedback", generated / "submitted", class_ids, stock=False)
            t_full = grade_ours(full, args.jobs, feedback=True)
            print(_line("ours with feedback and report", t_full, len(class_ids), notebooks)
                  + f"  (+{(t_full - t_ours) / t_ours:.0%} over autograde alone)", flush=True)

        if sizes:
            print("\nscaling (ours, autograde only):\n  students   seconds   s/submission   s/notebook")
            for n in sizes:
                elapsed = t_ours if n == args.students else grade_ours(
                    _course_copy(work / f"ours-{n}", generated / "submitted", ids[:n], stock=False), args.jobs)
                print(f"  {n:8d}  {elapsed:8.1f}   {elapsed / n:12.2f}   {elapsed / n / notebooks:10.2f}", flush=True)
        return 1 if differ else 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
