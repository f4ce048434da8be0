"""A `grade` command stopped in the middle (Ctrl-C, `kill`, a batch system's time limit) stops at once, leaves
nothing running and nothing of the students' behind, and the next run grades the class as if nothing had
happened."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ASSIGNMENT, GradedCourse, copy_course
from processes import alive, descendants, kill_all

STUDENTS = ("ada", "ben", "cleo")


def _grade(course: Path, jobs: int = 2, log: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin")
    students = [arg for s in STUDENTS for arg in ("--student", s)]
    # Its own process group, as in a terminal, with Ctrl-C's default action (a shell's background job ignores it).
    return subprocess.Popen([sys.executable, "-m", "torchsteps", "--course", str(course), "grade", "-j", str(jobs), *students],
                            cwd=course, env=env, stdout=log.open("w") if log else subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("stop", ["kill", "ctrl-c"])
@pytest.mark.parametrize("jobs", [1, 2])
def test_stopped_grade_leaves_no_process_and_no_sandbox_folder_and_a_rerun_grades_all(tmp_path, request, graded, jobs, stop):
    # Regressions: SIGTERM to `grade` left its workers running (reparented to init, grading the queued
    # submissions); a process ended by a signal left its sandboxes' folders, with the student's files;
    # Ctrl-C went on grading the submissions queued to the workers and ended with a traceback.
    # -j 1 grades in the command's own process; -j 2 in a pool of workers.
    from torchsteps.sandbox import SandboxUnavailable, check_sandbox

    try:
        check_sandbox()
    except SandboxUnavailable as why:  # pragma: no cover
        pytest.skip(f"no sandbox: {why}")
    course = copy_course(tmp_path / "course", demo_class=True)
    # Its own runtime folder, to see what is left in it; not under /tmp (kernels get their own /tmp).
    runtime = Path(tempfile.mkdtemp(prefix="torchsteps-test-runtime-", dir="/var/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(runtime, ignore_errors=True))
    with (course / "nbgrader_config.py").open("a", encoding="utf-8") as f:
        f.write(f"\nc.SandboxedKernelManager.runtime_dir = {str(runtime)!r}\n")

    log = tmp_path / "grade.log"
    command = _grade(course, jobs, log)
    running: set[int] = set()
    try:
        # Stopped once a student is graded and while another one's notebook is being graded.
        deadline = time.monotonic() + 300
        while not (": graded" in log.read_text() and list(runtime.glob("torchsteps-kernel-*/run/kernel-*.json"))):
            assert command.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no student graded within 300 s"
            time.sleep(0.05)
        running = descendants(command.pid)
        assert running, "the grade command has no worker processes"
        if stop == "kill":
            command.send_signal(signal.SIGTERM)
        else:
            os.killpg(command.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        command.wait(timeout=30)  # at once, not after the queued submissions
        output = log.read_text()
        assert command.returncode == (143 if stop == "kill" else 130), output[-3000:]
        if stop == "ctrl-c":
            assert "Stopped (Ctrl-C)" in output and "Traceback" not in output, output[-3000:]
        deadline = time.monotonic() + 60
        while (any(alive(p) for p in running) or list(runtime.glob("torchsteps-kernel-*"))) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in running if alive(p)], "processes of the killed grade command are still running"
        assert not list(runtime.glob("torchsteps-kernel-*")), "sandbox folders (with a student's files) were left behind"
    finally:
        command.kill()
        command.wait()
        kill_all(running)

    graded_before = set(re.findall(r"^\[\d+/\d+\] (\w+): graded", output, re.MULTILINE))
    assert graded_before and graded_before != set(STUDENTS), output[-3000:]
    if jobs == 1:
        return  # the re-run below is the same for both
    rerun = _grade(course)
    output, _ = rerun.communicate(timeout=30 * 60)
    assert rerun.returncode == 0, output[-4000:]
    # What the stopped run graded is kept (its digest was saved at once); the rest is graded now.
    kept = set(re.findall(r"^\[\d+/\d+\] (\w+): unchanged since it was graded", output, re.MULTILINE))
    assert kept == graded_before, output[-4000:]
    assert set(re.findall(r"^\[\d+/\d+\] (\w+): graded", output, re.MULTILINE)) == set(STUDENTS) - kept, output[-4000:]
    notebooks = sorted(p.stem for p in (course / "release" / ASSIGNMENT).glob("*.ipynb"))
    regraded = GradedCourse(course, output, {})
    for student in STUDENTS:
        for notebook in notebooks:
            assert graded["demo"].scores(student, notebook) == regraded.scores(student, notebook), (student, notebook)

