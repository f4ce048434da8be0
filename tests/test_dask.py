"""Grading on a Dask cluster survives a worker that dies mid-submission and gives a local run's grades.

A real ``dask scheduler`` and two real ``dask worker`` processes (the CLIs, on 127.0.0.1, each in its own
process group), the session's real PostgreSQL server as the shared gradebook (``tests/pgserver.py``), and
``python -m torchsteps grade --scheduler tcp://...`` as the instructor runs it. While the class is graded,
the test asks the scheduler which worker is executing a submission, waits until that submission has been
running for a moment, and kills the worker's whole process group (SIGKILL, as when a machine dies). Then:

- every student has exactly one ``[k/N] student: ...`` line, and the run ends with every student graded or
  listed with a reason (a broken notebook, a student not on the roster);
- the student whose worker was killed is graded (the task ran again on the other worker);
- the gradebook holds one submission per student and one grade per test cell (nothing graded twice);
- ``grades.csv`` is the same file as the one of a local run (SQLite, one process) of the same class, and the
  autograded notebooks and feedback came back to the instructor's folder (workers share no files with it).
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from conftest import ASSIGNMENT, REPO, copy_course, tree_digest, write_roster
from torchsteps.authoring.catalogue import by_notebook
from torchsteps.authoring.demo_submissions import instructor_answers
from torchsteps.authoring.submissions import fill_solutions

NOTEBOOK = "02_creating_tensors"
GRADE_TIMEOUT = 20 * 60
START_TIMEOUT = 120


def build_class(course: Path) -> list[str]:
    """One notebook per student: right, wrong, blank, unreadable, a linked folder, one with a link and a huge file beside
    its notebook, and one student not on the roster."""
    source = nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    release = nbformat.read(str(course / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    answers = instructor_answers(source)
    exercises = by_notebook()[NOTEBOOK].exercises
    notebooks = {
        "amy": fill_solutions(release, answers),
        "bob": fill_solutions(release, dict(answers, **{exercises[1].solution_id: exercises[1].mistakes[0].code})),
        "cat": release,
        "dan": fill_solutions(release, dict(answers, **{exercises[0].solution_id: exercises[0].mistakes[0].code})),
        "eve": fill_solutions(release, dict(answers, **{exercises[2].solution_id: exercises[2].alternatives[0].code})),
        "stranger": fill_solutions(release, answers),
    }
    for student, nb in notebooks.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, str(folder / f"{NOTEBOOK}.ipynb"))
    broken = course / "submitted" / "fox" / ASSIGNMENT
    broken.mkdir(parents=True)
    (broken / f"{NOTEBOOK}.ipynb").write_text("{ not a notebook", encoding="utf-8")
    # an assignment folder that is a link (to the instructor's source/): refused on the instructor's machine
    (course / "submitted" / "gil").mkdir()
    (course / "submitted" / "gil" / ASSIGNMENT).symlink_to(course / "source" / ASSIGNMENT)
    # what the client leaves out (a link, a file over the cap) is named on the row, as a local run names it
    extras = course / "submitted" / "eve" / ASSIGNMENT
    (extras / "data.csv").symlink_to("/nonexistent/data.csv")
    with (extras / "weights.pt").open("wb") as f:
        f.truncate(1024**3)  # sparse: no disk; never read, never sent
    roster = sorted(set(notebooks) - {"stranger"} | {"fox", "gil"})
    write_roster(course, roster)
    return sorted(roster + ["stranger"])


class Cluster:
    """A ``dask scheduler`` and workers started with the ``dask`` CLI, each in its own process group."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.scheduler_file = folder / "scheduler.json"
        self.workers: dict[str, subprocess.Popen] = {}
        self.env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        self.env.pop("TORCHSTEPS_DB_URL", None)  # the workers get the gradebook's URL from the client
        self.scheduler = self._start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", "0",
                                                   "--dashboard-address", "127.0.0.1:0",
                                                   "--scheduler-file", str(self.scheduler_file)])
        deadline = time.monotonic() + START_TIMEOUT
        while not self.scheduler_file.is_file():
            assert self.scheduler.poll() is None, self.log("scheduler")
            assert time.monotonic() < deadline, "the scheduler did not start\n" + self.log("scheduler")
            time.sleep(0.2)

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = (self.folder / f"{name}.log").open("wb")
        return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log, stderr=subprocess.STDOUT,
                                cwd=self.folder, env=self.env, start_new_session=True)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.is_file() else ""

    def start_worker(self, name: str) -> None:
        local = self.folder / f"{name}-local"
        local.mkdir()
        self.workers[name] = self._start(name, ["worker", "--scheduler-file", str(self.scheduler_file), "--name", name,
                                                "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
                                                "--local-directory", str(local)])

    def kill(self, name: str) -> None:
        os.killpg(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait()

    def stop(self) -> None:
        for process in [*self.workers.values(), self.scheduler]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dask")
    cluster = Cluster(folder)
    try:
        for name in ("worker-a", "worker-b"):
            cluster.start_worker(name)
        yield cluster
    finally:
        cluster.stop()


def _executing(client) -> dict[str, list[str]]:
    """``{worker name: keys of the tasks it is executing}``, asked of every worker."""
    def keys(dask_worker):
        return [str(ts.key) for ts in dask_worker.state.executing]

    names = {addr: info.get("name") for addr, info in client.scheduler_info(n_workers=-1)["workers"].items()}
    return {names[addr]: found for addr, found in client.run(keys, on_error="ignore").items() if addr in names}


@pytest.fixture(scope="module")
def graded(cluster, postgres, tmp_path_factory):
    """The class graded on the cluster (one worker killed mid-submission) and locally, at the same time."""
    from distributed import Client

    base = tmp_path_factory.mktemp("dask-courses")
    courses = {"cluster": copy_course(base / "cluster", demo_class=False),
               "local": copy_course(base / "local", demo_class=False)}
    students = [build_class(course) for course in courses.values()][0]
    before = tree_digest(courses["cluster"] / "submitted")
    url = postgres.create_database("dask_gradebook")
    client = Client(scheduler_file=str(cluster.scheduler_file), timeout="60s")
    try:
        client.wait_for_workers(2, timeout=START_TIMEOUT)
        env = {k: v for k, v in os.environ.items() if k != "TORCHSTEPS_DB_URL"}
        local = subprocess.Popen([sys.executable, "-m", "torchsteps", "--course", str(courses["local"]), "grade", "-j", "1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        remote = subprocess.Popen([sys.executable, "-m", "torchsteps", "--course", str(courses["cluster"]), "grade",
                                   "--scheduler", client.scheduler.address],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env=dict(env, TORCHSTEPS_DB_URL=url))
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(remote.stdout), daemon=True)
        reader.start()
        # Kill the worker that has been executing a gradable submission for a second (mid-submission).
        killed, victim, seen = None, None, {}
        deadline = time.monotonic() + GRADE_TIMEOUT
        while killed is None:
            assert remote.poll() is None, "grading ended before a worker could be killed:\n" + "".join(lines)[-5000:]
            assert time.monotonic() < deadline, "no worker was seen grading a submission"
            for name, keys in _executing(client).items():
                for key in keys:
                    student = re.match(r"torchsteps-grade-(.+)-[0-9a-f]{12}$", key)
                    if student and student.group(1) in {"amy", "bob", "cat", "dan", "eve"}:
                        first = seen.setdefault(key, time.monotonic())
                        if time.monotonic() - first > 1.0 and killed is None:
                            cluster.kill(name)
                            killed, victim = name, student.group(1)
            time.sleep(0.2)
        remote.wait(timeout=GRADE_TIMEOUT)
        reader.join(timeout=10)
        local_out, _ = local.communicate(timeout=GRADE_TIMEOUT)
    finally:
        client.close()
    out = "".join(lines)
    assert remote.returncode == 0, out[-5000:]
    assert local.returncode == 0, local_out[-5000:]
    assert tree_digest(courses["cluster"] / "submitted") == before
    return courses, students, out, killed, victim, url


def _rows(course: Path) -> dict[str, dict[str, str]]:
    with (course / "grades.csv").open(newline="", encoding="utf-8") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def test_every_student_has_one_progress_line_and_a_result(graded):
    courses, students, out, killed, victim, _ = graded
    progress = re.findall(r"^\[(\d+)/(\d+)\] (\S+): (.*)$", out, flags=re.M)
    assert sorted(p[2] for p in progress) == students, out[-5000:]
    assert sorted(int(p[0]) for p in progress) == list(range(1, len(students) + 1))
    assert {p[1] for p in progress} == {str(len(students))}
    rows = _rows(courses["cluster"])
    assert {s: rows[s]["status"] for s in students} == {**{s: "graded" for s in ("amy", "bob", "cat", "dan", "eve")},
                                                        "fox": "error", "gil": "error", "stranger": "error"}
    assert f"submitted/gil/{ASSIGNMENT} is a link, not a folder" in rows["gil"]["reason"], rows["gil"]
    assert "not a notebook" in rows["fox"]["reason"] or "JSON" in rows["fox"]["reason"], rows["fox"]
    assert "not on the roster" in rows["stranger"]["reason"], rows["stranger"]
    assert ("left out, not followed: data.csv (a link); left out, larger than 100 MiB: weights.pt (1.0 GiB)"
            in rows["eve"]["reason"]), rows["eve"]


def test_the_killed_workers_submission_was_graded_elsewhere(graded, cluster):
    courses, _, out, killed, victim, _ = graded
    assert cluster.workers[killed].returncode == -signal.SIGKILL
    assert re.search(rf"^\[\d+/\d+\] {victim}: graded", out, flags=re.M), out[-5000:]
    assert _rows(courses["cluster"])[victim]["status"] == "graded"


def test_each_submission_is_in_the_gradebook_once(graded, postgres):
    import psycopg2

    courses, *_ = graded
    # One grade per graded cell of every notebook of the assignment (a notebook not submitted scores 0).
    cells = sum(1 for path in (REPO / "source" / ASSIGNMENT).glob("*.ipynb")
                for c in nbformat.read(str(path), as_version=4).cells if c.metadata.get("nbgrader", {}).get("grade"))
    conn = psycopg2.connect(**postgres.connect_args("dask_gradebook"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT student_id, count(*) FROM submitted_assignment GROUP BY student_id ORDER BY student_id")
            assert dict(cur.fetchall()) == {s: 1 for s in ("amy", "bob", "cat", "dan", "eve")}
            cur.execute("SELECT s.student_id, count(*), count(DISTINCT (g.notebook_id, g.cell_id)) FROM grade g "
                        "JOIN submitted_notebook n ON g.notebook_id = n.id "
                        "JOIN submitted_assignment s ON n.assignment_id = s.id GROUP BY s.student_id")
            assert {row[0]: row[1:] for row in cur.fetchall()} == {s: (cells, cells) for s in ("amy", "bob", "cat", "dan", "eve")}
    finally:
        conn.close()


def test_grades_csv_is_the_local_runs(graded):
    courses, *_ = graded
    assert (courses["cluster"] / "grades.csv").read_text(encoding="utf-8") == (courses["local"] / "grades.csv").read_text(encoding="utf-8")


def test_autograded_notebooks_and_feedback_came_back(graded):
    courses, *_ = graded
    for student in ("amy", "bob", "cat", "dan", "eve"):
        for kind, suffix in (("autograded", ".ipynb"), ("feedback", ".html")):
            here = courses["cluster"] / kind / student / ASSIGNMENT / f"{NOTEBOOK}{suffix}"
            assert here.is_file(), here
        assert (courses["cluster"] / "autograded" / student / ASSIGNMENT / "checks.py").is_file()
    assert (courses["cluster"] / "report" / "index.html").is_file()


def test_the_surviving_worker_keeps_no_students_files(graded, cluster):
    # Regression: each task removed the submission it was sent and what it wrote back, but not the staged
    # copy that grading reads (.grading/staging/submitted/<student>/<assignment>), so the worker's disk
    # kept every student's notebook it had graded.
    _, students, _, killed, _, _ = graded
    (survivor,) = set(cluster.workers) - {killed}
    local = cluster.folder / f"{survivor}-local"
    kept = [str(path.relative_to(local)) for path in local.rglob("*")
            if path.is_file() and set(path.relative_to(local).parts) & set(students)]
    assert not kept, f"{survivor} kept students' files: {kept[:5]}"
