"""The host's side of the grader process: a sandboxed warm parent per grading process, a forked child per notebook.

The grader process (:mod:`.grader`, a script run inside the sandbox) runs the test cells. It gets a
bubblewrap sandbox of its own, built by :meth:`.kernel_manager.SandboxedKernelManager.sandbox_command` with the same limits as
a student kernel but a different user id (claimed here, from ``uid + GRADER_UID_OFFSET`` on), so the
student kernel can neither signal it nor read or write its files; its working folder holds only the
files the tests import (``checks.py``), owned by root and read-only to it. Like the student kernels
(:mod:`.warm`), the parent imports torch once and forks one child per notebook; between
notebooks it empties its ``/tmp``.

The host never decodes data that came from the student kernel: during a test cell it passes the grader
a connection to the harness's serve loop in the student kernel (a UNIX socket, sent over the parent's
fd channel with ``SCM_RIGHTS``), and the two talk directly.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from fnmatch import fnmatch
from pathlib import Path

from .folders import SANDBOX_WORKDIR, SIGNAL_REMOVAL_TIMEOUT_S, claim_uid, empty_folder, make_private_dir, remove_private_dir

__all__ = ["GraderParent", "GraderChild", "GraderError", "get_grader_parent", "harness_bootstrap", "close_all", "close_each", "end_process", "GRADER_UID_OFFSET"]

HERE = Path(__file__).resolve().parent
INSIDE = "/opt/torchsteps"
GRADER_UID_OFFSET = 1100  # kernels use uid, uid+1, ...; graders uid+1100, uid+1101, ... (no overlap below 1100 workers)


def harness_bootstrap() -> str:
    """Code that loads the harness (:mod:`.harness`, with :mod:`.crossing`) into a student kernel.

    Run before any cell of the notebook; it adds no name to the notebook's namespace.
    """
    modules = [("_torchsteps_crossing", (HERE / "crossing.py").read_text()),
               ("_torchsteps_harness", (HERE / "harness.py").read_text())]
    loader = (
        "import sys, types\n"
        f"for name, source in {modules!r}:\n"
        "    module = types.ModuleType(name)\n"
        "    module.__file__ = '<' + name + '>'\n"
        "    sys.modules[name] = module\n"
        "    exec(compile(source, module.__file__, 'exec'), module.__dict__)\n"
    )
    return f"exec(compile({loader!r}, '<torchsteps harness>', 'exec'), {{'__name__': '_torchsteps_boot'}});"


class GraderError(RuntimeError):
    """The grader process died, stopped answering or sent something unreadable."""


def _claim_grader_uid(base: int, lock_dir: Path) -> int:
    """The grader user id of this grading process (:func:`~torchsteps.sandbox.folders.claim_uid`)."""
    uid = claim_uid(base, lock_dir, "grader-uid")
    if uid is None:
        raise GraderError(f"no free grader user id in {base}..{base + 999}")
    return uid


def end_process(process: subprocess.Popen, now: bool = False) -> None:
    """SIGKILL the process group of ``process`` (a sandbox started with ``start_new_session``) and reap it.

    ``now``: called from a signal handler. The main thread may be inside ``process.wait()``, holding the
    lock that a second ``wait()`` without a timeout would wait for forever; ``poll()`` and ``wait(timeout)``
    only try that lock. A process not reaped within a second is left to ``init`` (the command is exiting).
    """
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        process.wait(timeout=1 if now else None)
    except subprocess.TimeoutExpired:
        pass


class _Lines:
    """Reads JSON lines from a pipe with a deadline (several lines may arrive at once)."""

    def __init__(self, fd: int):
        self.fd, self.buffer = fd, b""

    def read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                raise GraderError("the grader process exited")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            raise GraderError("the grader process sent an unreadable line") from None


class GraderParent:
    """One warm grader parent (sandboxed unless the manager runs kernels without a sandbox)."""

    def __init__(self, manager, sandboxed: bool, max_reply_bytes: int = 64 * 1024 * 1024):
        self.root = make_private_dir(manager.runtime_dir)
        try:
            self._start(manager, sandboxed, max_reply_bytes)
        except BaseException:
            self.close()  # whatever went wrong (a timeout, an unreadable line, Ctrl-C): nothing is left behind
            raise

    def _start(self, manager, sandboxed: bool, max_reply_bytes: int) -> None:
        self.work = self.root / "work"
        os.chmod(self.work, 0o755)
        # The channel the host passes connections to the student kernel over (see GraderChild.hand_over);
        # SOCK_SEQPACKET: each token arrives alone with its descriptor.
        self.fd_channel, grader_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        settings = {
            "preload": list(manager.preload), "warmup": manager.warmup, "cpu_seconds": manager.cpu_seconds,
            "workdir": SANDBOX_WORKDIR if sandboxed else str(self.work), "sandboxed": sandboxed,
            "fd_channel": grader_end.fileno(), "max_reply_bytes": max_reply_bytes,
        }
        if sandboxed:
            uid = _claim_grader_uid(manager.uid + GRADER_UID_OFFSET, Path(manager.runtime_dir))
            command = manager.sandbox_command(
                [sys.executable, f"{INSIDE}/grader.py", json.dumps(settings)], self.root,
                extra_ro_binds={str(HERE / "grader.py"): f"{INSIDE}/grader.py",
                                str(HERE / "crossing.py"): f"{INSIDE}/_torchsteps_crossing.py"},
                cpu_limit=False,
            )
            kernel_uid = manager.kernel_uid if os.geteuid() == 0 else None
            command = [
                f"--reuid={uid}" if a == f"--reuid={kernel_uid}" else f"--regid={uid}" if a == f"--regid={kernel_uid}" else a
                for a in command
            ]
        else:
            command = [sys.executable, str(HERE / "grader.py"), json.dumps(settings)]
        try:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                start_new_session=True, cwd=str(self.root), pass_fds=(grader_end.fileno(),),
            )
        finally:
            grader_end.close()
        self.lines = _Lines(self.process.stdout.fileno())
        try:
            ready = self.lines.read(120)
        except TimeoutError:
            raise GraderError("the grader process did not start within 120 s") from None
        if ready.get("op") != "ready":
            raise GraderError(f"the grader process did not start: {ready}")

    def send(self, **message) -> None:
        try:
            self.process.stdin.write((json.dumps(message) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError, OSError) as e:
            raise GraderError(f"the grader process stopped ({e})") from None

    def alive(self) -> bool:
        return self.process.poll() is None

    def start_child(self, folder: str | None, patterns: list[str]) -> "GraderChild":
        """Fork a grader for one notebook, with the files of ``folder`` matching ``patterns`` to import."""
        if not empty_folder(self.work):  # the last notebook's files must not reach this one
            self.close()
            raise GraderError(f"the grader's working folder {self.work} could not be emptied")
        if folder and os.path.isdir(folder):
            # As the student kernel's working folder (kernel_manager._copy_workdir): relative paths, no links.
            for dirpath, dirnames, filenames in os.walk(folder):
                dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
                for name in filenames:
                    path = os.path.join(dirpath, name)
                    rel = os.path.relpath(path, folder).replace(os.sep, "/")
                    if os.path.islink(path) or name.endswith(".ipynb") or not any(fnmatch(rel, p) for p in patterns):
                        continue
                    target = self.work / rel
                    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                    shutil.copyfile(path, target)
                    os.chmod(target, 0o644)
        self.send(op="start")
        try:
            ready = self.lines.read(30)
        except TimeoutError:
            raise GraderError("the grader process did not fork within 30 s") from None
        if ready.get("op") != "ready":
            raise GraderError(f"the grader process could not start a grader: {ready}")
        return GraderChild(self)

    def close(self, now: bool = False) -> None:
        """Kill the grader sandbox and remove its folder; ``now``: from a signal handler (see :func:`end_process`)."""
        if getattr(self, "closed", False):  # once: a parent that closed itself is closed again when replaced
            return
        try:
            process = getattr(self, "process", None)  # None: it failed to start
            if process is not None:
                end_process(process, now)
        finally:
            channel = getattr(self, "fd_channel", None)
            if channel is not None:
                channel.close()
            remove_private_dir(self.root, timeout_s=SIGNAL_REMOVAL_TIMEOUT_S if now else 300)
            # Only now: a signal handler's close(now=True) during this one must still end the process.
            self.closed = True


class GraderChild:
    """The grader of one notebook: send cells, relay its requests, end it."""

    def __init__(self, parent: GraderParent):
        self.parent = parent
        self.finished = False

    def send(self, **message) -> None:
        self.parent.send(**message)

    def hand_over(self, connection: socket.socket) -> None:
        """Pass the grader a connection to the student kernel's serve loop (it answers ``connect``)."""
        token = os.urandom(8)
        try:
            socket.send_fds(self.parent.fd_channel, [token], [connection.fileno()])
        except OSError as e:
            raise GraderError(f"the grader process stopped ({e})") from None
        self.send(op="connected", token=token.hex())

    def receive(self, timeout: float) -> dict:
        """The next message; ``{"op": "exited"}`` when the child died (the parent reports it)."""
        message = self.parent.lines.read(max(0.1, timeout))
        if message.get("op") == "exited":
            self.finished = True
        return message

    def close(self, timeout: float = 10) -> None:
        """End the child (waiting for the parent's report), or kill the whole grader sandbox if it hangs."""
        if self.finished:
            return
        try:
            self.send(op="exit")
            deadline = time.monotonic() + timeout
            while not self.finished:
                self.receive(deadline - time.monotonic())
        except (GraderError, TimeoutError):
            self.parent.close()
        self.finished = True


_parents: dict[tuple, GraderParent] = {}
# A forked child does not own its parent's sandboxes: at its exit it must not end them.
os.register_at_fork(after_in_child=_parents.clear)


def get_grader_parent(manager, sandboxed: bool, max_reply_bytes: int = 64 * 1024 * 1024) -> GraderParent:
    """This process's warm grader parent for the manager's sandbox settings (started on first use)."""
    key = (manager.memory_mb, manager.cpu_seconds, manager.max_processes, manager.max_file_mb,
           manager.max_open_files, tuple(manager.preload), manager.warmup, sandboxed, max_reply_bytes)
    parent = _parents.get(key)
    if parent is None or not parent.alive():
        if parent is not None:
            parent.close()
        parent = _parents[key] = GraderParent(manager, sandboxed, max_reply_bytes)
    return parent


@atexit.register
def close_all(now: bool = False) -> None:
    """End this process's warm grader parents and remove their private folders (also run at exit);
    ``now``: from a signal handler, waiting for nothing (:func:`end_process`)."""
    parents = list(_parents.values())
    _parents.clear()
    close_each(parents, now)


def close_each(handles, now: bool = False) -> None:
    """``close(now)`` each of ``handles``; one that fails does not keep the others open (the first error is raised)."""
    error = None
    for handle in handles:
        try:
            handle.close(now)
        except Exception as e:  # noqa: BLE001 - re-raised below, once the others are closed
            error = error or e
    if error is not None:
        raise error
