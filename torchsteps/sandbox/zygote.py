"""The warm-kernel parent ("zygote"), run INSIDE the sandbox by torchsteps.sandbox.warm.

It imports the heavy modules once (torch, numpy, ipykernel), then, for each notebook, forks a child that
becomes a fresh IPython kernel for that notebook alone: the child starts from the parent's state right
after the imports, before any student code ran, so students share nothing but that read-only start.
Between kernels the parent kills every other process of the sandbox and empties /tmp and the working
folder (which the grader refills).

This file is copied into the sandbox read-only and run by the sandbox's Python: it must not import
torchsteps (which the sandbox does not contain). Protocol: one JSON object per line on stdin, one JSON
reply per line on stdout.
"""

import ctypes
import json
import os
import random
import resource
import shutil
import signal
import sys
import time


def _wipe(folder):
    for entry in os.scandir(folder):
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


def _kill_everything_else():
    """SIGKILL every process of this sandbox except this one and init, until none is left.

    ``kill(-1)`` can miss processes forked while it runs (a fork bomb), so it is repeated.
    """
    me = os.getpid()
    for _ in range(50):
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]
        if not others:
            return
        time.sleep(0.01)


def _become_kernel(argv, workdir, keep_fds, cpu_seconds):
    """In the forked child: a new session, clean stdio, then an IPython kernel; never returns."""
    try:
        os.setsid()  # its own process group: ipykernel's interrupt (killpg) reaches it alone
        if cpu_seconds:
            # Set here, not on the parent: the parent's own CPU time (the imports) must not count.
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        for fd in keep_fds:
            os.close(fd)
        os.chdir(workdir)
        random.seed()  # the parent's random state would be the same in every child
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from ipykernel.kernelapp import IPKernelApp

        app = IPKernelApp.instance()
        app.initialize(argv)
        app.start()
    finally:
        os._exit(0)


def main():
    settings = json.loads(sys.argv[1])
    preload, workdir = settings["preload"], settings["workdir"]
    warmup, cpu_seconds = settings.get("warmup", ""), settings.get("cpu_seconds", 0)
    for name in preload:
        __import__(name)
    if warmup:
        exec(warmup, {})  # e.g. the first meta-device op, which imports torch's meta kernels (~1.7 s)
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401

    # Not dumpable: a kernel (same user) cannot ptrace this parent to change later kernels.
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    control_in = os.dup(0)
    control_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    reader = os.fdopen(control_in, "r")
    writer = os.fdopen(control_out, "w", buffering=1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    child, status = None, None

    def reply(**message):
        writer.write(json.dumps(message) + "\n")

    def reap():
        nonlocal status
        if child is not None and status is None:
            pid, code = os.waitpid(child, os.WNOHANG)
            if pid:
                status = os.waitstatus_to_exitcode(code)
        return status

    reply(ready=True, pid=os.getpid())
    for line in reader:
        message = json.loads(line)
        command = message["cmd"]
        if command == "start":
            try:
                pid = os.fork()
            except OSError:  # the process limit, if something survived the last reset
                _kill_everything_else()
                try:
                    pid = os.fork()
                except OSError as e:
                    reply(error=f"fork failed: {e}")
                    continue
            if pid == 0:
                _become_kernel(message["argv"], workdir, (control_in, control_out), cpu_seconds)
            child, status = pid, None
            reply(pid=pid)
        elif command == "poll":
            reply(status=reap())
        elif command == "signal":
            if reap() is None:
                try:
                    os.killpg(child, message["signum"])
                except OSError:
                    pass
            reply(ok=True)
        elif command == "reset":
            # Every process of this sandbox but the parent and bubblewrap's init: the kernel and
            # whatever it started, whichever session or group it moved to.
            _kill_everything_else()
            if child is not None and status is None:
                try:
                    os.waitpid(child, 0)
                except ChildProcessError:
                    pass
            child, status = None, None
            _wipe("/tmp")
            _wipe(workdir)
            reply(ok=True)
        elif command == "exit":
            break


if __name__ == "__main__":
    main()
