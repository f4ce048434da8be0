"""Warm kernels: fork each notebook's kernel from a sandboxed parent that has already imported torch.

A fresh kernel pays the interpreter, IPython, ipykernel and torch start-up every time (about 3 s of CPU
here). :class:`Zygote` starts ONE sandboxed process per grading process (same bubblewrap boundary and
limits as a cold kernel, see :mod:`torchsteps.sandbox.kernel_manager`) that imports those modules once; each notebook
then gets a child forked from it before any student code ran (``torchsteps/sandbox/zygote.py``). Students share
nothing: each kernel is a new process, started from the same read-only state, in its own mount and IPC
namespaces with its own size-limited tmpfs for everything it may write (issue 11); between kernels the
parent (root inside the sandbox, not dumpable: no kernel can signal or ptrace it) kills every other
process in the sandbox, and the kernel's tmpfs and IPC objects go with its namespaces.

:class:`ForkedKernel` is the kernel's handle for jupyter_client: it behaves like the ``Popen`` that
``LocalProvisioner`` keeps (``poll``, ``wait``, ``send_signal``, ``kill``).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .folders import SIGNAL_REMOVAL_TIMEOUT_S, chown_tree, empty_folder, make_private_dir, remove_private_dir
from .grader_process import close_each, end_process, harness_bootstrap
from .memory_cgroup import memory_cgroup_or_none

__all__ = ["Zygote", "ForkedKernel", "get_zygote", "ZygoteError"]

ZYGOTE_SCRIPT = Path(__file__).with_name("zygote.py")
ZYGOTE_PATH_INSIDE = "/opt/torchsteps/zygote.py"


class ZygoteError(RuntimeError):
    """The warm parent died or stopped answering; the caller starts a new one."""


class Zygote:
    """One sandboxed warm parent process; kernels are forked from it one at a time."""

    def __init__(self, manager, preload: list[str], warmup: str = ""):
        self.root = make_private_dir(manager.runtime_dir)
        try:
            self._start(manager, preload, warmup)
        except BaseException:
            self.close()  # whatever went wrong (a timeout, an unreadable line, Ctrl-C): nothing is left behind
            raise

    def _start(self, manager, preload: list[str], warmup: str) -> None:
        self.run_dir = self.root / "run"
        self.work_dir = self.root / "work"
        chown_tree(self.root / "run", manager.kernel_uid)
        chown_tree(self.root / "work", manager.kernel_uid)
        # The harness's loader travels in the command line: 46 kB of JSON, under Linux's 128 kB for one argument.
        settings = dict(manager.isolation_settings(), preload=preload, warmup=warmup, harness=harness_bootstrap())
        command = manager.sandbox_command(
            [sys.executable, ZYGOTE_PATH_INSIDE, json.dumps(settings)],
            self.root,
            extra_ro_binds={str(ZYGOTE_SCRIPT): ZYGOTE_PATH_INSIDE},
            cpu_limit=False,  # each kernel gets the CPU limit when it is forked (see zygote.py)
            parent=True,
        )
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1, start_new_session=True, cwd=str(self.root),
        )
        ready = self._read(timeout=120)
        if not ready.get("ready"):
            raise ZygoteError(f"the warm kernel parent did not start: {ready}")
        self.harness_preloaded = bool(ready.get("harness"))  # else the grader loads it into each kernel
        # Joined after the imports, so that only what kernels add (their memory and the tmpfs pages they
        # write) is charged to the cgroup, not the parent's torch (see memory_cgroup.add_session).
        self.cgroup = memory_cgroup_or_none(manager.cgroup_memory_mb, getattr(manager, "log", None))
        if self.cgroup is not None:
            self.cgroup.add_session(self.process.pid)

    def _read(self, timeout: float) -> dict:
        # A kernel runs as the same user as its parent and could stop it (SIGSTOP): never wait forever.
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise ZygoteError(f"the warm kernel parent did not answer within {timeout} s")
        line = self.process.stdout.readline()
        if not line:
            raise ZygoteError("the warm kernel parent exited")
        try:
            return json.loads(line)
        except ValueError:
            raise ZygoteError(f"the warm kernel parent sent an unreadable line: {line[:200]!r}") from None

    def request(self, **message) -> dict:
        with self._lock:
            if self.process.poll() is not None:
                raise ZygoteError("the warm kernel parent exited")
            try:
                self.process.stdin.write(json.dumps(message) + "\n")
                self.process.stdin.flush()
                return self._read(timeout=20)
            except (BrokenPipeError, ValueError) as e:
                raise ZygoteError(f"the warm kernel parent stopped answering ({e})") from None

    def alive(self) -> bool:
        return self.process.poll() is None

    def responsive(self) -> bool:
        """Alive and answering (a stopped parent fails this within the request timeout)."""
        try:
            return self.alive() and "status" in self.request(cmd="poll")
        except ZygoteError:
            return False

    def start_kernel(self, argv: list[str]) -> "ForkedKernel":
        reply = self.request(cmd="start", argv=argv)
        if "pid" not in reply:
            raise ZygoteError(f"the warm kernel parent could not fork: {reply.get('error')}")
        return ForkedKernel(self, reply["pid"])

    def reset(self) -> None:
        """Kill whatever the last kernel left running; empty /tmp, the working folder and run/.

        run/ too: nothing there is needed once the kernel is gone, and a kernel could have left a link
        there for the grader (root) to follow when it writes the next connection file.
        """
        if self.alive():
            try:
                self.request(cmd="reset")
            except ZygoteError:
                self.close()  # it no longer answers; get_zygote starts a new one
                return
        if not all(empty_folder(folder) for folder in (self.work_dir, self.run_dir)):
            self.close()  # the next student's kernel must not see this one's files: start afresh

    def close(self, now: bool = False) -> None:
        """End the parent and its kernels and remove the folder; ``now``: from a signal handler (no goodbye,
        no waiting: :func:`~torchsteps.sandbox.grader_process.end_process`)."""
        if getattr(self, "closed", False):  # once: a parent that closed itself is closed again when replaced
            return
        try:
            process = getattr(self, "process", None)  # None: it failed to start
            if process is not None and not now and process.poll() is None:
                try:
                    process.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
                    process.stdin.close()
                    process.wait(timeout=5)
                except (BrokenPipeError, OSError, subprocess.TimeoutExpired, ValueError):
                    pass
            if process is not None:
                end_process(process, now)
        finally:
            remove_private_dir(self.root, timeout_s=SIGNAL_REMOVAL_TIMEOUT_S if now else 300)
            if getattr(self, "cgroup", None) is not None:
                self.cgroup.remove()
                self.cgroup = None
            # Only now: a signal handler's close(now=True) during this one must still end the process.
            self.closed = True


class ForkedKernel:
    """A ``Popen``-like handle of a kernel forked by a :class:`Zygote` (its pid is inside the sandbox)."""

    stdin = stdout = stderr = None

    def __init__(self, zygote: Zygote, pid: int):
        self.zygote = zygote
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                self.returncode = self.zygote.request(cmd="poll")["status"]
            except ZygoteError:
                self.returncode = -signal.SIGKILL
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("kernel", timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            try:
                self.zygote.request(cmd="signal", signum=int(signum))
            except ZygoteError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


_zygotes: dict[tuple, Zygote] = {}
# A forked child does not own its parent's sandboxes: at its exit it must not end them.
os.register_at_fork(after_in_child=_zygotes.clear)


def get_zygote(manager, preload: list[str], warmup: str = "") -> Zygote:
    """The warm parent of this process for the manager's sandbox settings (started on first use)."""
    key = (
        manager.memory_mb, manager.cpu_seconds, manager.max_processes, manager.max_file_mb,
        manager.max_open_files, manager.kernel_uid, tuple(preload), warmup,
        manager.scratch_mb, manager.scratch_inodes, manager.cgroup_memory_mb,
    )
    zygote = _zygotes.get(key)
    if zygote is None or not zygote.alive():
        if zygote is not None:
            zygote.close()
        zygote = _zygotes[key] = Zygote(manager, preload, warmup)
    return zygote


@atexit.register
def close_all(now: bool = False) -> None:
    """End this process's warm parents of the kernels and remove their private folders (also run at exit);
    ``now``: from a signal handler."""
    zygotes = list(_zygotes.values())
    _zygotes.clear()
    close_each(zygotes, now)

