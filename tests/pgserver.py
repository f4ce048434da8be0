"""A throwaway PostgreSQL server for the tests that need a real shared gradebook.

``initdb`` + ``postgres`` in a temporary folder, on a free port of 127.0.0.1 only, password
authentication; the ``postgres`` fixture (``conftest.py``) starts one per test session. The URL names the
installed driver, ``postgresql+psycopg2://``: SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3.

PostgreSQL refuses to run as root (what CI runs as), so under root the server runs as the unprivileged
user ``nobody`` (present on every Debian/Ubuntu system; ``subprocess``'s ``user=``/``group=``, so no
``su``/``runuser`` and no system user to create), in a temporary folder of its own under /tmp.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

SERVER_PROGRAMS = ("initdb", "postgres")
UNPRIVILEGED_USER = "nobody"
DB_USER = "torchsteps"
# The driver is named: SQLAlchemy 2.1 maps a bare "postgresql://" to psycopg 3, which is not installed;
# the pinned driver is psycopg2 (psycopg2-binary).
URL_SCHEME = "postgresql+psycopg2"
START_TIMEOUT = 60


# --- The server --------------------------------------------------------------------


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
