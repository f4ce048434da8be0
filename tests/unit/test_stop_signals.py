"""Stopping `grade` with a signal: the sandboxes and their folders go, and the command always exits.

Each case runs a grading process in miniature (a real warm grader parent, or a private folder) with the
signal handlers of ``python -m torchsteps grade`` (``_stop_on_signals``), and signals it from outside.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

_GRADING = """
import os, signal, sys, time, types
from pathlib import Path
from torchsteps.__main__ import _stop_on_signals
from torchsteps.sandbox import grader_process
from torchsteps.sandbox.folders import make_private_dir

base, what, ignored = sys.argv[1], sys.argv[2], sys.argv[3:]
# As an interactive shell starts a command, whatever pytest was started with (`nohup`, `&`)...
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGHUP, signal.SIG_DFL)
for name in ignored:  # ...or as `nohup` starts it
    signal.signal(getattr(signal, name), signal.SIG_IGN)
_stop_on_signals()
if what == "waiting-for-the-grader":
    manager = types.SimpleNamespace(runtime_dir=base, preload=[], warmup="", cpu_seconds=60, memory_mb=4096,
                                    max_processes=64, max_file_mb=64, max_open_files=256)
    parent = grader_process.get_grader_parent(manager, sandboxed=False)
    print(parent.root, parent.process.pid, file=sys.stderr, flush=True)
    parent.process.wait()  # as the main thread does while a grader parent closes: it holds the process's wait lock
else:
    print(make_private_dir(base), os.getpid(), file=sys.stderr, flush=True)
    while True:
        time.sleep(0.1)
"""


_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def _start(base: Path, what: str, *ignored: str) -> tuple[subprocess.Popen, Path, int]:
    process = subprocess.Popen([sys.executable, "-c", _GRADING, str(base), what, *ignored],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _started.append(process)
    root, pid = process.stderr.readline().split()
    assert Path(root).is_dir(), root
    return process, Path(root), int(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        # A zombie (exited, not reaped yet: its parent is gone and init reaps it) counts as gone.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def _wait_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_sigterm_while_the_main_thread_waits_for_a_grader_process_ends_it(tmp_path):
    # Regression: the handler closed the grader parent with Popen.wait(), whose lock the interrupted main
    # thread held (it was inside wait() itself): the command hung for ever instead of exiting.
    process, root, grader_pid = _start(tmp_path, "waiting-for-the-grader")
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
    except subprocess.TimeoutExpired:
        pytest.fail("the command hung in its SIGTERM handler")
    assert not root.exists(), "the grader's folder was left behind"
    assert _wait_gone(grader_pid), "the grader process outlived the command"


def test_ctrl_c_with_stdout_a_closed_pipe_still_cleans_up_and_exits_130(tmp_path):
    # Regression: `grade | tee log` with tee killed first: writing the "Stopped" line raised
    # BrokenPipeError in the handler, which escaped it (a traceback, exit 1, no os._exit).
    process, root, _ = _start(tmp_path, "folder")
    process.stdout.close()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 128 + signal.SIGINT
    assert not root.exists()
    assert "Traceback" not in process.stderr.read()


def test_sighup_from_a_closed_terminal_cleans_up(tmp_path):
    process, root, _ = _start(tmp_path, "folder")
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=30) == 128 + signal.SIGHUP
    assert not root.exists(), "the folder outlived a SIGHUP"


def test_a_command_started_with_nohup_keeps_ignoring_sighup(tmp_path):
    process, root, _ = _start(tmp_path, "folder", "SIGHUP")
    try:
        process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert process.poll() is None, "nohup asked to ignore SIGHUP"
        assert root.is_dir()
    finally:
        process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    assert not root.exists()


def test_a_second_signal_does_not_cut_the_cleanup_short(tmp_path):
    # Ctrl-C pressed twice, or a batch system's SIGTERM repeated: the first handler goes on to the end.
    process, root, grader_pid = _start(tmp_path, "waiting-for-the-grader")
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) in (128 + signal.SIGINT, 128 + signal.SIGTERM)
    assert not root.exists()
    assert _wait_gone(grader_pid)
