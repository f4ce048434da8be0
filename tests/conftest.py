"""Shared fixtures: copies of the course graded by the real `make grade` command.

Grading is the slow part (a Jupyter kernel and torch import per notebook), so the whole suite grades
two course copies once per session, in parallel, each with the real CLI (`python -m torchsteps grade`):
- "demo": the committed demo class in submitted/, exactly what `make grade` grades;
- "catalogue": every mistake-catalogue entry and alternative (torchsteps.authoring.catalogue_submissions), plus the
  instructor solutions, the instructor notebooks themselves and the untouched release.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from torchsteps.grading.course import default_assignment, load_config

REPO = Path(__file__).resolve().parents[1]
_CONFIG = load_config(REPO)
ASSIGNMENT = default_assignment(_CONFIG)
COURSE_ID = _CONFIG.CourseDirectory.course_id
GRADE_TIMEOUT = 45 * 60


def copy_course(dst: Path, *, demo_class: bool, extra_students=()) -> Path:
    """A fresh course directory at ``dst``: config, roster, source/, release/ and optionally the demo class."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("nbgrader_config.py", "students.csv"):
        shutil.copy(REPO / name, dst / name)
    for folder in ("source", "release") + (("submitted",) if demo_class else ()):
        shutil.copytree(REPO / folder, dst / folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    if extra_students:
        with (dst / "students.csv").open("a", encoding="utf-8") as f:
            f.writelines(f"{s},,,\n" for s in extra_students)
    return dst


def write_roster(course: Path, students) -> None:
    """Replace the course's roster CSV (imported by `grade` with `nbgrader db student import`) with ``students``."""
    (course / "students.csv").write_text("id,first_name,last_name,email\n" + "".join(f"{s},,,\n" for s in students), encoding="utf-8")


def write_submissions(course: Path, students: dict[str, dict[str, nbformat.NotebookNode]]) -> None:
    for student, notebooks in students.items():
        for name, nb in notebooks.items():
            out = course / "submitted" / student / ASSIGNMENT / f"{name}.ipynb"
            out.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(out))


def execute_step(step_class, cells, folder: Path, config):
    """Run ``cells`` through one of our execute preprocessors (``GuardedExecute``, ``TrustedExecute``) with a
    real sandboxed kernel, the notebook's folder holding an empty ``checks.py``; the executed notebook.
    Skips the test where no sandbox can be made."""
    from nbformat.v4 import new_notebook

    from torchsteps.sandbox import SandboxUnavailable, check_sandbox

    try:
        check_sandbox()
    except SandboxUnavailable as why:  # pragma: no cover
        pytest.skip(f"no sandbox: {why}")
    (folder / "checks.py").write_text("")
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb, _ = step_class(config=config).preprocess(nb, {"metadata": {"path": str(folder)}})
    return nb


def tree_digest(folder: Path) -> dict[str, str]:
    def digest(path: Path) -> str:  # in chunks: a submission may hold a 1 GiB sparse file
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()

    return {str(p.relative_to(folder)): digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def built_release(tmp_path_factory) -> Path:
    """``release/<assignment>/`` of a course copy, made by the real release step (`python -m torchsteps release`,
    what `make release` and `make grade` run: nbgrader generate_assignment, then the self-check wheel)."""
    course = copy_course(tmp_path_factory.mktemp("release") / "course", demo_class=False)
    shutil.rmtree(course / "release")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(course)}
    done = subprocess.run([sys.executable, "-m", "torchsteps", "release"], cwd=course, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return course / "release" / ASSIGNMENT


@dataclass
class GradedCourse:
    root: Path
    stdout: str
    submitted_before: dict[str, str]

    def scores(self, student: str, notebook: str) -> dict[str, tuple[float, float]]:
        """``{grade_id: (score, max_score)}`` of one autograded notebook, from the gradebook."""
        with Gradebook(f"sqlite:///{self.root / 'gradebook.db'}", COURSE_ID) as gb:
            nb = gb.find_submission_notebook(notebook, ASSIGNMENT, student)
            return {g.name: (float(g.score), float(g.max_score)) for g in nb.grades}


def _start_grading(course: Path) -> subprocess.Popen:
    # A PATH without the virtual environment, as when an instructor runs .venv/bin/python directly:
    # nbgrader must still find its `alembic` script to create the fresh gradebook (regression).
    env = dict(os.environ, PATH="/usr/bin:/bin")
    return subprocess.Popen(
        [sys.executable, "-m", "torchsteps", "--course", str(course), "grade"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=course, env=env,
    )


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    """``{"demo": GradedCourse, "catalogue": GradedCourse}``, both graded by the real CLI in parallel."""
    from torchsteps.authoring.catalogue_submissions import catalogue_class

    base = tmp_path_factory.mktemp("courses")
    demo = copy_course(base / "demo", demo_class=True)
    students, _ = catalogue_class(REPO, ASSIGNMENT)
    catalogue = copy_course(base / "catalogue", demo_class=False, extra_students=sorted(students) + ["broken"])
    write_submissions(catalogue, students)
    # Two submissions that cannot be graded; the rest of the class must be graded all the same.
    broken = catalogue / "submitted" / "broken" / ASSIGNMENT
    broken.mkdir(parents=True)
    (broken / f"{sorted(students['solutions'])[0]}.ipynb").write_text("{ this is not JSON", encoding="utf-8")
    stranger = catalogue / "submitted" / "stranger" / ASSIGNMENT
    shutil.copytree(catalogue / "submitted" / "solutions" / ASSIGNMENT, stranger)
    courses = {"demo": demo, "catalogue": catalogue}
    before = {k: tree_digest(v / "submitted") for k, v in courses.items()}
    procs = {k: _start_grading(v) for k, v in courses.items()}
    out = {}
    for k, proc in procs.items():
        stdout, _ = proc.communicate(timeout=GRADE_TIMEOUT)
        if proc.returncode != 0:
            pytest.fail(f"`python -m torchsteps grade` failed on the {k} course:\n{stdout[-5000:]}")
        out[k] = GradedCourse(courses[k], stdout, before[k])
    return out


@pytest.fixture(scope="session")
def postgres():
    """A running PostgreSQL server shared by the session's tests (each uses its own database); stopped and deleted afterwards."""
    from pgserver import PostgresServer, find_server_bindir

    bindir = find_server_bindir()
    if bindir is None:
        message = ("PostgreSQL server programs (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin; "
                   "install them: apt-get install -y postgresql")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.remove()
