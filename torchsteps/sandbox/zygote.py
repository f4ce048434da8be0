"""The warm-kernel parent ("zygote"), run INSIDE the sandbox by torchsteps.sandbox.warm.

It imports the heavy modules once (torch, numpy, ipykernel), then, for each notebook, forks a child that
becomes a fresh IPython kernel for that notebook alone: the child starts from the parent's state right
after the imports, before any student code ran, so students share nothing but that read-only start.
Between kernels the parent kills every other process of the sandbox and empties /tmp and the working
folder (which the grader refills).

This file is copied into the sandbox read-only and run by the sandbox's Python: it must not import
torchsteps (which the sandbox does not contain). Protocol: one JSON object per line on stdin, one JSON
reply per line on stdout.

Per-kernel isolation (``_isolate``, ``_drop_privileges``): the parent runs as root inside the sandbox (it
is not dumpable and no kernel can signal it), each forked child enters NEW mount and IPC namespaces,
mounts one size-limited tmpfs (bytes and inodes) holding everything the student may write (working
folder, ``/tmp``, ``/dev/shm``, ``HOME``, IPython dir, caches), makes the socket folder read-only for
itself, and only then becomes the unprivileged kernel user. The tmpfs and IPC objects vanish with the
kernel's last process, so nothing one student writes is ever on a path a later kernel reads.
"""

import ctypes
import errno
import json
import os
import random
import resource
import shutil
import signal
import sys
import time


KERNEL_INIT_MODULES = (
    "ipykernel.debugger", "ipykernel.zmqshell", "IPython.core.completerlib", "IPython.core.debugger",
    "IPython.core.oinspect", "IPython.utils.wildcard", "IPython.extensions", "sqlite3", "psutil", "faulthandler",
    "pdb", "pydoc", "tornado.gen", "tornado.locks", "tornado.queues", "mimetypes", "http.server", "xmlrpc.client",
)


def _wipe(folder):
    for entry in os.scandir(folder):
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


# --- per-kernel isolation (runs in the forked child, as root, before any student code) -------------
CLONE_NEWNS, CLONE_NEWIPC = 0x00020000, 0x08000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE = 24, 38, 4
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result, what):
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _mount(source, target, fstype, flags, data=None):
    _check(_libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                       ctypes.c_ulong(flags), data and data.encode()), f"mount {target}")


def _bind(source, target, read_only=False):
    _mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _isolate(settings):
    """New mount and IPC namespaces and a fresh size-limited tmpfs for everything writable.

    Layout of the tmpfs (mounted at ``settings["scratch"]``, the kernel's ``HOME``): ``work/`` (the
    working folder, a copy of ``settings["given"]``), ``tmp/`` (bound on ``/tmp``), ``shm/`` (bound on
    ``/dev/shm``), ``.ipython``, ``.cache``, ``.config``.
    """
    uid = settings["uid"]
    scratch, workdir = settings["scratch"], settings["workdir"]
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates back to the parent
    old_tmp = os.open("/tmp", os.O_PATH | os.O_DIRECTORY)
    _mount("scratch", scratch, "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={settings['scratch_bytes']},nr_inodes={settings['scratch_inodes']},mode=0700")
    os.chown(scratch, uid, uid)  # HOME is the kernel's: programs that write ~/.something work
    for sub, mode in (("work", 0o700), ("tmp", 0o1777), ("shm", 0o1777), (".ipython", 0o700),
                      (".cache", 0o700), (".config", 0o700)):
        path = os.path.join(scratch, sub)
        os.mkdir(path)
        os.chmod(path, mode)
        os.chown(path, uid, uid)
    _bind(os.path.join(scratch, "tmp"), "/tmp")
    os.makedirs("/dev/shm", exist_ok=True)
    _bind(os.path.join(scratch, "shm"), "/dev/shm")
    # Read-only folders that lived under the parent's /tmp (a Python environment cloned there).
    for path in settings.get("keep_under_tmp", []):
        rel = os.path.relpath(path, "/tmp")
        os.makedirs(path, exist_ok=True)
        _bind(f"/proc/self/fd/{old_tmp}/{rel}", path, read_only=True)
    os.close(old_tmp)
    given = settings["given"]
    # The handed-out files, subfolders too; links are never followed (the grader copied none).
    for dirpath, dirnames, filenames in os.walk(given):
        rel = os.path.relpath(dirpath, given)
        target_dir = os.path.normpath(os.path.join(workdir, rel))
        if rel != ".":
            os.mkdir(target_dir)
            os.chown(target_dir, uid, uid)
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            source = os.path.join(dirpath, name)
            if os.path.isfile(source) and not os.path.islink(source):
                target = os.path.join(target_dir, name)
                shutil.copyfile(source, target, follow_symlinks=False)
                os.chown(target, uid, uid)
    os.environ.update(
        HOME=scratch, TMPDIR="/tmp", IPYTHONDIR=os.path.join(scratch, ".ipython"),
        MPLCONFIGDIR=os.path.join(scratch, ".config", "matplotlib"),
        XDG_CACHE_HOME=os.path.join(scratch, ".cache"), XDG_CONFIG_HOME=os.path.join(scratch, ".config"),
        TORCH_HOME=os.path.join(scratch, ".cache", "torch"),
    )


def _limit_privileges():
    """Before any thread starts: no capability can come back through exec (bounding set, no_new_privs)."""
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL for caps this kernel lacks: nothing to drop
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


# No user namespaces for student code: inside one it would be root again and could mount a tmpfs of any
# size (memory the limits above never see). A seccomp filter refuses clone/unshare with CLONE_NEWUSER,
# clone3 (ENOSYS: glibc falls back to clone, whose flags a filter can read) and other ABIs.
_SECCOMP_ARCH = {  # machine: (AUDIT_ARCH, unshare, clone, clone3)
    "x86_64": (0xC000003E, 272, 56, 435),
    "aarch64": (0xC00000B7, 97, 220, 435),
}
CLONE_NEWUSER = 0x10000000


def _deny_user_namespaces():
    machine = os.uname().machine
    if machine not in _SECCOMP_ARCH:
        raise OSError(errno.ENOSYS, f"no seccomp filter for {machine}: user namespaces cannot be denied")
    arch, nr_unshare, nr_clone, nr_clone3 = _SECCOMP_ARCH[machine]
    LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ALLOW, ERRNO = 0x7FFF0000, 0x00050000
    prog = [  # (code, jt, jf, k); jumps count instructions to skip
        (LD, 0, 0, 4),                      # 0 arch
        (JEQ, 1, 0, arch),                  # 1
        (RET, 0, 0, ERRNO | errno.ENOSYS),  # 2 another ABI (i386 int 0x80, compat): refused
        (LD, 0, 0, 0),                      # 3 syscall number
        (JGE, 8, 0, 0x40000000),            # 4 x32 ABI -> 13
        (JEQ, 3, 0, nr_unshare),            # 5 -> 9
        (JEQ, 2, 0, nr_clone),              # 6 -> 9
        (JEQ, 5, 0, nr_clone3),             # 7 -> 13
        (RET, 0, 0, ALLOW),                 # 8
        (LD, 0, 0, 16),                     # 9 low half of the first argument (flags)
        (JSET, 1, 0, CLONE_NEWUSER),        # 10 -> 12
        (RET, 0, 0, ALLOW),                 # 11
        (RET, 0, 0, ERRNO | errno.EPERM),   # 12
        (RET, 0, 0, ERRNO | errno.ENOSYS),  # 13
    ]

    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]

    filters = (Filter * len(prog))(*[Filter(*insn) for insn in prog])
    program = Program(len(prog), filters)
    _check(_libc.prctl(22, 2, ctypes.byref(program), 0, 0), "seccomp")  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER


def _drop_privileges(uid, run_dir):
    """After the kernel bound its sockets: socket folder read-only, then the unprivileged user.

    glibc applies set*id to every thread, and a uid change from root clears all capabilities.
    """
    if run_dir:
        _mount(None, run_dir, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.geteuid() == 0 or os.getegid() == 0:
        raise OSError(errno.EPERM, "could not leave root")
    _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # a normal process again for the student's own tools


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


def _skip_empty_flushes():
    """Make ipykernel's ``OutStream.flush`` return at once when nothing was written since the last one.

    ipykernel flushes stdout and stderr twice per execute request, and each flush is a round trip to its
    IO thread even when nothing is pending: measured 1.1 ms of a kernel's 4.0 ms of CPU per cell (ipykernel
    7.4). Anything written (``print``, output of the process's file descriptors 1 and 2, which its pipe
    watcher writes, or of a forked child) marks the stream pending, and is flushed as before. A flush in
    progress on the IO thread counts as pending too: ipykernel's ``_flush`` clears the flag before it
    queues the text, and the cell's "idle" must not be queued in between (found by a review).
    """
    from ipykernel.iostream import OutStream

    flush, send = OutStream.flush, OutStream._flush
    if getattr(flush, "skips_empty", False):
        return

    def send_counted(self):
        self._sends_in_progress = getattr(self, "_sends_in_progress", 0) + 1
        try:
            send(self)
        finally:
            self._sends_in_progress -= 1

    def flush_if_written(self):
        # The flags first, then the sends in progress: a send that cleared them is still counted.
        if (getattr(self, "_flush_pending", True) or getattr(self, "_subprocess_flush_pending", True)
                or getattr(self, "_sends_in_progress", 0)):
            flush(self)

    flush_if_written.skips_empty = True
    OutStream._flush = send_counted
    OutStream.flush = flush_if_written


def _become_kernel(argv, settings, keep_fds):
    """In the forked child: a new session, private namespaces, clean stdio, then an IPython kernel; never returns."""
    try:
        try:
            os.setsid()  # its own process group: ipykernel's interrupt (killpg) reaches it alone
        except OSError:
            pass  # already a session leader (a cold kernel started by bubblewrap)
        try:  # when the sandbox's memory cgroup is full, the OOM killer ends this kernel, never the warm parent
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")
        except OSError:
            pass
        cpu_seconds = settings.get("cpu_seconds", 0)
        if cpu_seconds:
            # Set here, not on the parent: the parent's own CPU time (the imports) must not count.
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        for fd in keep_fds:
            os.close(fd)
        isolated = os.geteuid() == 0 and settings.get("uid") is not None
        if isolated:
            _isolate(settings)
            _limit_privileges()
            _deny_user_namespaces()  # before any thread: every thread inherits the filter
        os.chdir(settings["workdir"])
        random.seed()  # the parent's random state would be the same in every child
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _skip_empty_flushes()
        from ipykernel.kernelapp import IPKernelApp

        app = IPKernelApp.instance()
        app.initialize(argv)  # binds the sockets in run/ and loads IPython, before any student code
        if isolated:
            _drop_privileges(settings["uid"], os.path.dirname(app.abs_connection_file))
        app.start()
    finally:
        os._exit(0)


def _usage(child, scratch):
    """Bytes and inodes used and free in a kernel's tmpfs, read through its /proc root (needs root)."""
    st = os.statvfs(f"/proc/{child}/root{scratch}")
    return {
        "bytes_total": st.f_blocks * st.f_frsize, "bytes_free": st.f_bfree * st.f_frsize,
        "inodes_total": st.f_files, "inodes_free": st.f_ffree,
    }


def main():
    settings = json.loads(sys.argv[1])
    if sys.argv[2:3] == ["--exec"]:  # a cold kernel: the same isolation, no warm parent
        _become_kernel(sys.argv[3:], settings, ())
    preload, workdir = settings["preload"], settings["workdir"]
    warmup, cpu_seconds = settings.get("warmup", ""), settings.get("cpu_seconds", 0)
    for name in preload:
        __import__(name)
    if warmup:
        exec(warmup, {})  # e.g. the first meta-device op, which imports torch's meta kernels (~1.7 s)
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401

    # What IPKernelApp.initialize imports in every child otherwise (measured: 162 modules, about 0.3 s a
    # kernel, most of it debugpy through ipykernel.debugger). Imported here once, before any student code.
    for name in KERNEL_INIT_MODULES:
        try:
            __import__(name)
        except ImportError:
            pass

    # The grading harness (trusted code, as the grader sends it), loaded once here instead of by an
    # execute request in each kernel (about 25 ms of a kernel's CPU for its 43 kB of source). Every
    # kernel starts from this state, before any student code.
    harness = False
    if settings.get("harness"):
        try:
            exec(settings["harness"], {"__name__": "_torchsteps_boot"})
            harness = True
        except Exception:  # noqa: BLE001 - the grader then loads it into each kernel as before
            pass

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

    reply(ready=True, pid=os.getpid(), harness=harness)
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
                _become_kernel(message["argv"], settings, (control_in, control_out))
            child, status = pid, None
            reply(pid=pid)
        elif command == "poll":
            reply(status=reap())
        elif command == "usage":
            try:
                reply(**_usage(child, settings["scratch"])) if reap() is None else reply(error="no kernel")
            except OSError as e:
                reply(error=str(e))
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
            if settings.get("uid") is None:
                # Not isolated (no root inside the sandbox): the kernels shared these folders.
                _wipe("/tmp")
                _wipe(workdir)
            reply(ok=True)
        elif command == "exit":
            break


if __name__ == "__main__":
    main()
