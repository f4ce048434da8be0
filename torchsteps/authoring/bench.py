"""Benchmark: stock ``nbgrader autograde`` against ``python -m torchsteps grade``, side by side in one run.

    python -m torchsteps.authoring.bench [--students 100] [--scaling 25,50,100] [--jobs N]

Generates a class from the mistake catalogue (each exercise answered with the instructor's answer, an
alternative or a mistake, chosen with a fixed seed), grades the same submissions twice in two copies of
the course — once with stock nbgrader (its own CLI, stock preprocessors, one submission at a time, a
fresh kernel per notebook) and once with ours (parallel workers, sandboxed warm kernels) — checks that
every test cell got the same score from both, and prints seconds per submission and the ratio. Then it
grades subsets with ours to show how the time grows with the class size. Feedback and the report are
left out of both timings (stock autograde does not make them).
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


def grade_ours(course: Path, jobs: int) -> float:
    """Seconds for ``python -m torchsteps grade --autograde-only`` of the whole class."""
    return _run([sys.executable, "-m", "torchsteps", "--course", str(course), "grade", "--autograde-only", "-j", str(jobs)], course)


def cell_scores(course: Path) -> dict[tuple[str, str, str], float]:
    """``{(student, notebook, grade_id): score}`` of every graded cell in the course's gradebook."""
    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        for submission in gb.find_assignment(ASSIGNMENT).submissions:
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    scores[(submission.student.id, notebook.name, grade.name)] = float(grade.score)
    return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchsteps.authoring.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", "-n", type=int, default=100)
    parser.add_argument("--scaling", default="25,50,100", help="class sizes graded with ours to show scaling ('' to skip)")
    parser.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary courses")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="torchsteps-bench-"))
    try:
        generated = _course_copy(work / "generated", None, [], stock=True)
        ids = generate_class(generated, max([args.students] + [int(n) for n in args.scaling.split(",") if n]))
        notebooks = len(by_notebook())
        print(f"{len(ids)} students x {notebooks} notebooks generated from the catalogue; {args.jobs} jobs; in {work}")

        class_ids = ids[: args.students]
        stock = _course_copy(work / "stock", generated / "submitted", class_ids, stock=True)
        ours = _course_copy(work / "ours", generated / "submitted", class_ids, stock=False)
        t_ours = grade_ours(ours, args.jobs)
        print(f"ours : {t_ours:8.1f} s  {t_ours / len(class_ids):6.2f} s/submission  {t_ours / len(class_ids) / notebooks:5.2f} s/notebook", flush=True)
        t_stock = grade_stock(stock)
        print(f"stock: {t_stock:8.1f} s  {t_stock / len(class_ids):6.2f} s/submission  {t_stock / len(class_ids) / notebooks:5.2f} s/notebook", flush=True)
        a, b = cell_scores(stock), cell_scores(ours)
        differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        print(f"grades: {len(a)} cells graded by stock, {len(b)} by ours, {len(differ)} differ")
        for key in differ[:20]:
            print(f"  {key}: stock {a.get(key)}, ours {b.get(key)}")
        print(f"ratio: ours is {t_stock / t_ours:.1f}x faster than stock nbgrader autograde")

        sizes = [int(n) for n in args.scaling.split(",") if n]
        if sizes:
            print("\nscaling (ours):\n  students   seconds   s/submission")
            for n in sizes:
                elapsed = t_ours if n == args.students else grade_ours(
                    _course_copy(work / f"ours-{n}", generated / "submitted", ids[:n], stock=False), args.jobs)
                print(f"  {n:8d}  {elapsed:8.1f}   {elapsed / n:6.2f}", flush=True)
        return 1 if differ else 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
