"""The gradebook in PostgreSQL: a course graded with a PostgreSQL URL gives the grades SQLite gives.

``nbgrader_config.py`` takes the gradebook URL from ``TORCHSTEPS_DB_URL`` (SQLite in the course folder
when unset), so a class graded from several machines can share one PostgreSQL gradebook. This module
starts a real, throwaway PostgreSQL server (``initdb`` + ``postgres`` in a temporary folder, on a free
port of 127.0.0.1 only, password authentication), grades a small class into it with the real CLI and
two worker processes (``python -m torchsteps grade -j 2``), and grades the same submissions into SQLite
in another copy of the course: both ``grades.csv`` must be the same file. The URL names the installed
driver, ``postgresql+psycopg2://``: SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3 (see
``test_a_bare_postgresql_url_works``).

PostgreSQL refuses to run as root (what CI runs as), so under root the server runs as the unprivileged
user ``nobody`` (present on every Debian/Ubuntu system; ``subprocess``'s ``user=``/``group=``, so no
``su``/``runuser`` and no system user to create), in a temporary folder of its own under /tmp.
Without PostgreSQL's server programs the module is skipped, except under ``CI=true``, where it fails
(CI installs them: apt-get install postgresql).
"""

from __future__ import annotations

import csv
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from conftest import ASSIGNMENT, COURSE_ID, REPO, copy_course, tree_digest, write_roster
from torchsteps.constants import is_test_cell
from torchsteps.authoring.catalogue import by_notebook
from torchsteps.authoring.demo_submissions import instructor_answers
from torchsteps.authoring.submissions import fill_solutions, grade_ids

NOTEBOOK = "02_creating_tensors"

SERVER_PROGRAMS = ("initdb", "postgres")
UNPRIVILEGED_USER = "nobody"
DB_USER = "torchsteps"
DB_NAME = "gradebook"
# The driver is named: SQLAlchemy 2.1 maps a bare "postgresql://" to psycopg 3, which is not installed;
# the pinned driver is psycopg2 (psycopg2-binary).
URL_SCHEME = "postgresql+psycopg2"
START_TIMEOUT = 60
GRADE_TIMEOUT = 20 * 60


# --- A throwaway PostgreSQL server --------------------------------------------------------------------


def _version_key(path: Path) -> tuple:
    return tuple(int(n) for n in re.findall(r"\d+", str(path)))


def find_server_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres`` of one PostgreSQL installation, newest first.

    Debian/Ubuntu's ``postgresql`` package installs them in /usr/lib/postgresql/<version>/bin, which is
    not on PATH (only the client programs get wrappers in /usr/bin).
    """
    candidates = []
    for name in ("postgres", "initdb", "pg_ctl"):
        found = shutil.which(name)
        if found:
            candidates.append(Path(found).resolve().parent)
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/opt/postgresql*/bin"):
        candidates += sorted(Path("/").glob(pattern.lstrip("/")), key=_version_key, reverse=True)
    for folder in dict.fromkeys(candidates):
        if all(os.access(folder / program, os.X_OK) for program in SERVER_PROGRAMS):
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reachable_by_anyone(folder: Path) -> bool:
    """Whether every folder from / down to ``folder`` can be traversed by other users."""
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [folder, *folder.parents])


class PostgresServer:
    """``initdb`` into a fresh folder, then ``postgres`` in the foreground as a child of this process."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.password = secrets.token_hex(16)
        self.as_user: dict = {}
        base = None
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(UNPRIVILEGED_USER)
            except KeyError:
                pytest.fail(f"running as root and there is no user '{UNPRIVILEGED_USER}' to run PostgreSQL as")
            self.as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            if not _reachable_by_anyone(Path(tempfile.gettempdir()).resolve()):
                base = "/tmp"  # TMPDIR is private to root; the server's user could not reach it
        self.root = Path(tempfile.mkdtemp(prefix="torchsteps-pg-", dir=base))
        if self.as_user:
            os.chown(self.root, self.as_user["user"], self.as_user["group"])
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.process: subprocess.Popen | None = None
        self.port = 0

    def _run(self, args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=self.root, capture_output=True, text=True, timeout=START_TIMEOUT,
                              env=dict(os.environ, LC_ALL="C"), **self.as_user)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.is_file() else "(no server log)"

    def start(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.as_user:
            os.chown(pwfile, self.as_user["user"], self.as_user["group"])
        done = self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", DB_USER, f"--pwfile={pwfile}",
                          "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"])
        pwfile.unlink()
        if done.returncode != 0:
            pytest.fail(f"initdb failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        for _attempt in range(5):  # a free port can be taken by someone else before the server binds it
            self.port = _free_port()
            if self._start_on(self.port):
                return
        pytest.fail(f"PostgreSQL did not start:\n{self.log_tail()}")

    def _start_on(self, port: int) -> bool:
        import psycopg2

        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}",
                 # a throwaway database: no need to survive a crash
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                cwd=self.root, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, LC_ALL="C"), **self.as_user,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                psycopg2.connect(**self.connect_args("postgres"), connect_timeout=2).close()
                return True
            except psycopg2.OperationalError:
                time.sleep(0.2)
        self.stop()
        return False

    def connect_args(self, dbname: str) -> dict:
        return {"host": "127.0.0.1", "port": self.port, "user": DB_USER, "password": self.password, "dbname": dbname}

    def url(self, dbname: str) -> str:
        return f"{URL_SCHEME}://{DB_USER}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> str:
        import psycopg2

        conn = psycopg2.connect(**self.connect_args("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{dbname}"')
        finally:
            conn.close()
        return self.url(dbname)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: disconnect clients, exit cleanly
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    """A running PostgreSQL server owned by this module; stopped and deleted afterwards."""
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


# --- The class: one notebook per student ----------------------------------------------------------------


def build_class(course: Path) -> dict[str, set[str]]:
    """Write the submissions; returns ``{student: test cells expected to score 0}``."""
    source = nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    release = nbformat.read(str(course / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    answers = instructor_answers(source)
    mistaken = by_notebook()[NOTEBOOK].exercises[1]
    submissions = {
        "correct": (fill_solutions(release, answers), set()),
        "blank": (release, set(grade_ids(release))),
        "mistake": (fill_solutions(release, dict(answers, **{mistaken.solution_id: mistaken.mistakes[0].code})),
                    set(mistaken.test_ids)),
    }
    for student, (nb, _) in submissions.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, str(folder / f"{NOTEBOOK}.ipynb"))
    write_roster(course, submissions)
    return {student: zero for student, (_, zero) in submissions.items()}


def _grade(course: Path, db_url: str | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TORCHSTEPS_DB_URL"}
    if db_url:
        env["TORCHSTEPS_DB_URL"] = db_url
    return subprocess.Popen([sys.executable, "-m", "torchsteps", "--course", str(course), "grade", "-j", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=course, env=env)


@pytest.fixture(scope="module")
def graded(postgres, tmp_path_factory):
    """The same class graded twice, at once: into PostgreSQL and into SQLite (the default)."""
    base = tmp_path_factory.mktemp("postgres")
    courses = {"postgres": copy_course(base / "postgres", demo_class=False),
               "sqlite": copy_course(base / "sqlite", demo_class=False)}
    expect = {name: build_class(course) for name, course in courses.items()}
    assert expect["postgres"] == expect["sqlite"]
    before = tree_digest(courses["postgres"] / "submitted")
    url = postgres.create_database(DB_NAME)
    procs = {"postgres": _grade(courses["postgres"], url), "sqlite": _grade(courses["sqlite"], None)}
    out = {}
    for name, proc in procs.items():
        stdout, _ = proc.communicate(timeout=GRADE_TIMEOUT)
        assert proc.returncode == 0, f"grading into {name} failed:\n{stdout[-5000:]}\n--- server log ---\n{postgres.log_tail()}"
        out[name] = stdout
    assert tree_digest(courses["postgres"] / "submitted") == before
    return courses, expect["postgres"], url, out


def _rows(course: Path) -> dict[str, dict[str, str]]:
    with (course / "grades.csv").open(newline="", encoding="utf-8") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def _points() -> dict[str, float]:
    source = nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    return {c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader["points"]) for c in source.cells
            if is_test_cell(c)}


# --- Tests ----------------------------------------------------------------------------------------------


def test_a_bare_postgresql_url_works(postgres, monkeypatch):
    """What an instructor types, ``postgresql://user:password@host:port/db``, opens the gradebook.

    Regression: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed;
    nbgrader_config.py maps it to the pinned psycopg2.
    """
    from nbgrader.api import Gradebook

    from torchsteps.grading.course import load_config

    url = postgres.create_database("bare_url").replace(f"{URL_SCHEME}://", "postgresql://", 1)
    monkeypatch.setenv("TORCHSTEPS_DB_URL", url)
    config = load_config(REPO)
    with Gradebook(config.CourseDirectory.db_url, COURSE_ID) as gb:
        gb.update_or_create_student("ada")
        assert [s.id for s in gb.students] == ["ada"]


def test_grades_csv_has_the_expected_scores(graded):
    courses, expect, _, out = graded
    assert re.search(r"\b0 could not be graded", out["postgres"]), out["postgres"][-3000:]
    rows = _rows(courses["postgres"])
    points = _points()
    assert sorted(rows) == sorted(expect)
    for student, zero in expect.items():
        row = rows[student]
        assert row["status"] == "graded", row
        scores = {k.split(":", 1)[1]: float(v) for k, v in row.items() if k.startswith(NOTEBOOK + ":")}
        assert scores == {cell: 0.0 if cell in zero else full for cell, full in points.items()}, student


def test_the_gradebook_is_in_postgresql(graded, postgres):
    import psycopg2
    from nbgrader.api import Gradebook

    courses, expect, url, _ = graded
    conn = psycopg2.connect(**postgres.connect_args(DB_NAME))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM student ORDER BY id")
            assert [r[0] for r in cur.fetchall()] == sorted(expect)
            cur.execute("SELECT s.student_id, count(*) FROM grade g JOIN submitted_notebook n ON g.notebook_id = n.id "
                        "JOIN notebook nb ON n.notebook_id = nb.id JOIN submitted_assignment s ON n.assignment_id = s.id "
                        "WHERE nb.name = %s GROUP BY s.student_id ORDER BY s.student_id", (NOTEBOOK,))
            assert dict(cur.fetchall()) == {s: len(_points()) for s in expect}
    finally:
        conn.close()
    rows = _rows(courses["postgres"])
    with Gradebook(url, COURSE_ID) as gb:
        for student in expect:
            nb = gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student)
            stored = {g.name: float(g.score) for g in nb.grades}
            assert stored == {k.split(":", 1)[1]: float(v) for k, v in rows[student].items() if k.startswith(NOTEBOOK + ":")}
            assert float(gb.find_submission(ASSIGNMENT, student).score) == float(rows[student]["score"])


def test_nothing_was_written_to_sqlite(graded):
    courses, *_ = graded
    assert not [p for p in courses["postgres"].rglob("*") if p.suffix in (".db", ".sqlite", ".sqlite3") or p.name.startswith("gradebook")]
    assert (courses["sqlite"] / "gradebook.db").is_file()  # the default, for comparison


def test_postgresql_and_sqlite_give_the_same_grades_csv(graded):
    courses, *_ = graded
    assert (courses["postgres"] / "grades.csv").read_text(encoding="utf-8") == (courses["sqlite"] / "grades.csv").read_text(encoding="utf-8")
