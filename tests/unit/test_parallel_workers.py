"""The grading pool's worker processes (torchsteps.grading.parallel) end with the command that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from processes import alive, kill_all

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

# A grading command in miniature: the real pool, with a grade_one that records its worker's pid and then
# stands for a long submission. It is a module of its own so the spawned workers can import it by name.
SLOW_GRADER = '''
import os, time
from pathlib import Path

def grade_one(api, assignment_id, student_id, known, expected, feedback):
    Path(os.environ["PIDS"], student_id).write_text(str(os.getpid()))
    time.sleep(120)
'''

COMMAND = '''
import sys
from traitlets.config import Config
from torchsteps.grading.course import open_api
from torchsteps.grading.parallel import grade_in_parallel
import slow_grader

if __name__ == "__main__":  # "spawn" workers import this file again
    config = Config()
    config.CourseDirectory.root = sys.argv[1]
    api = open_api(sys.argv[1], config)
    students = [f"s{i}" for i in range(6)]  # more than the workers: some stay queued
    for result in grade_in_parallel(api, slow_grader.grade_one, "ps1", students, set(students), None, jobs=2):
        pass
'''


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_workers_end_when_the_grading_command_is_killed(tmp_path, how):
    # Regression: `kill <grade>` (a batch system's time limit) left the workers running, reparented to
    # init, grading the submissions already queued to them minutes later.
    (tmp_path / "slow_grader.py").write_text(textwrap.dedent(SLOW_GRADER))
    (tmp_path / "command.py").write_text(textwrap.dedent(COMMAND))
    pids = tmp_path / "pids"
    pids.mkdir()
    course = tmp_path / "course"
    course.mkdir()
    env = {**os.environ, "PIDS": str(pids), "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    command = subprocess.Popen([sys.executable, str(tmp_path / "command.py"), str(course)], env=env)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline:
            assert command.poll() is None, "the grading command ended before its workers started"
            workers = [int(p.read_text()) for p in pids.iterdir() if p.read_text()]
            time.sleep(0.1)
        assert len(workers) == 2, "the two workers never started grading"
        command.send_signal(how)
        command.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if alive(pid)], "workers outlived the grading command"
        assert len(list(pids.iterdir())) == 2, "a worker went on to the next queued submission"
    finally:
        command.kill()
        kill_all(workers)
