"""A Jupyter kernel manager that runs every kernel inside a bubblewrap sandbox.

nbgrader's execute step starts kernels through ``Execute.kernel_manager_class``; setting it to
:class:`SandboxedKernelManager` (``nbgrader_config.py``) puts every student kernel, whichever nbgrader
entry point started it, behind this boundary:

- filesystem: a fresh root with read-only ``/usr`` and Python environment, a private writable copy of
  the files the notebooks need (``workdir_files``: the assignment's handed-out files, e.g. ``checks.py``) as the working directory, and a
  private ``/tmp``. Nothing else of the course (``source/``, other students, ``gradebook.db``) exists
  inside;
- per kernel (issue 11, when grading as root): new mount and IPC namespaces and ONE tmpfs of
  ``scratch_mb`` MiB and ``scratch_inodes`` inodes holding the working folder, ``/tmp``, ``/dev/shm``,
  ``HOME``, the IPython dir and caches; it vanishes with the kernel, so no later kernel reads anything
  a student wrote. The socket folder is read-only for the kernel, and a seccomp filter refuses user
  namespaces (inside one a kernel would be root again). See ``zygote.py``;
- no network: a new network namespace with no interfaces but loopback; the kernel talks to nbgrader
  over ZeroMQ ``ipc`` (UNIX sockets in a private folder), not TCP;
- a new PID namespace: the kernel sees only its own processes, and all of them die with it;
- an unprivileged user (``uid``), so the process limit applies (it is not enforced for root);
- ``setrlimit`` limits through util-linux ``prlimit``: address space, CPU seconds, processes, file
  size, open files, no core dumps; the environment is cleared (no instructor secrets).

Tools: bubblewrap (``bwrap``), util-linux ``prlimit`` and ``setpriv``; :func:`check_sandbox` says what
is missing. Where no sandbox can be made, kernels do not start unless ``allow_unsandboxed`` is set.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from fnmatch import fnmatch
from pathlib import Path

from queue import Empty

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, DottedObjectName, Integer, List, TraitError, Type, Unicode, validate

from .memory_cgroup import memory_cgroup_or_none
from .folders import SANDBOX_GIVEN, SANDBOX_SCRATCH, SANDBOX_WORKDIR, chown_tree, claim_uid, make_private_dir, remove_private_dir
from .warm import ZYGOTE_PATH_INSIDE, ZYGOTE_SCRIPT, ZygoteError, get_zygote

__all__ = ["SandboxedKernelManager", "SandboxUnavailable", "check_sandbox"]

REQUIRED_TOOLS = ("bwrap", "prlimit", "setpriv")
# What the root parent inside the sandbox keeps (all else is gone from its bounding set): mount and
# unshare (sys_admin), becoming the kernel user (setuid/setgid/setpcap), copying and handing over the
# working copy (chown/fowner/dac_override), killing what a kernel left (kill), reading a kernel's tmpfs
# usage through /proc/<pid>/root (sys_ptrace).
PARENT_CAPS = ("sys_admin", "setuid", "setgid", "setpcap", "chown", "fowner", "dac_override", "kill", "sys_ptrace")


class SandboxUnavailable(RuntimeError):
    """No sandbox can be made on this machine (not Linux, a tool missing, namespaces refused)."""


_sandbox_checked = False


def check_sandbox() -> None:
    """Raise :class:`SandboxUnavailable` with the reason if a sandboxed kernel cannot start here.

    A success is remembered for the life of the process (the probe starts bubblewrap once).
    """
    global _sandbox_checked
    if _sandbox_checked:
        return
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(f"the sandbox needs Linux namespaces; this is {sys.platform}")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise SandboxUnavailable(
            f"missing {', '.join(missing)}: install bubblewrap and util-linux (Debian: apt-get install bubblewrap util-linux)"
        )
    probe = subprocess.run(
        ["bwrap", "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent", "true"],
        capture_output=True, text=True,
    )
    if probe.returncode != 0:
        raise SandboxUnavailable(f"bubblewrap cannot create namespaces here: {probe.stderr.strip()}")
    _sandbox_checked = True


def _python_roots() -> list[str]:
    """Folders the kernel's Python needs, read-only: the environment and the interpreter it was made from."""
    roots = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), os.path.realpath(sys.exec_prefix)}
    roots.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    # The environment may be a symlink (.venv -> elsewhere); bind the path the kernel command uses too.
    roots.add(os.path.abspath(sys.prefix))
    return sorted(r for r in roots if not r.startswith("/usr"))


def _claim_uid(base: int, lock_dir: Path) -> int:
    """The kernel user id of this grading process (:func:`~torchsteps.sandbox.folders.claim_uid`)."""
    uid = claim_uid(base, lock_dir, "uid")
    if uid is None:
        raise SandboxUnavailable(f"no free sandbox user id in {base}..{base + 999}")
    return uid


def _parents(path: str) -> list[str]:
    """bwrap arguments creating the missing parent folders of ``path`` world-traversable.

    bwrap creates them 0700 otherwise, which the unprivileged kernel user cannot traverse.
    """
    args = []
    for parent in reversed(Path(path).parents[:-1]):
        args += ["--perms", "0755", "--dir", str(parent)]
    return args


class SandboxedKernelClient(AsyncKernelClient):
    """``AsyncKernelClient`` whose ``wait_for_ready`` ends as soon as the kernel is known to be ready.

    jupyter_client's version, after the ``kernel_info_reply`` and one IOPub message, drains IOPub until it
    has been silent for 0.2 s: 0.2 s of every notebook's kernel start spent waiting (half of a warm start).
    Here, as there, the kernel is ready once the reply has come on the shell channel and any message on
    IOPub (the subscription is live: ipykernel greets each subscriber, and publishes the status of each
    request), and the request is sent again when either is missing; only the final drain is left out.
    Messages still on IOPub belong to the start or to that request, and every reader (nbclient,
    ``TrustedExecute``) skips messages by their parent's ``msg_id``.
    """

    async def _async_wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        while True:
            msg_id = self.kernel_info()
            if await self._replied_and_subscribed(msg_id, deadline):
                return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")

    async def _replied_and_subscribed(self, msg_id: str, deadline: float) -> bool:
        end = min(deadline, time.monotonic() + 1.0)
        while True:
            try:
                msg = await self.shell_channel.get_msg(timeout=max(0.0, end - time.monotonic()))
            except Empty:
                return False
            if msg["msg_type"] == "kernel_info_reply" and msg["parent_header"].get("msg_id") == msg_id:
                self._handle_kernel_info_reply(msg)
                break
        try:
            await self.iopub_channel.get_msg(timeout=0.2)
        except Empty:
            return False
        return True

    wait_for_ready = _async_wait_for_ready


class SandboxedKernelManager(AsyncKernelManager):
    """``AsyncKernelManager`` that starts the kernel inside bubblewrap with resource limits."""

    client_class = DottedObjectName("torchsteps.sandbox.kernel_manager.SandboxedKernelClient")
    client_factory = Type(SandboxedKernelClient, klass=AsyncKernelClient)

    memory_mb = Integer(3072, help="address-space limit of each kernel process (RLIMIT_AS), MiB").tag(config=True)
    cpu_seconds = Integer(180, help="CPU-time limit of each kernel process (RLIMIT_CPU), seconds").tag(config=True)
    max_processes = Integer(
        128, help="processes and threads of the sandbox user (RLIMIT_NPROC); torch and ipykernel use about 20"
    ).tag(config=True)
    max_file_mb = Integer(64, help="largest file the kernel may write (RLIMIT_FSIZE), MiB").tag(config=True)
    scratch_mb = Integer(
        256, help="all bytes a notebook may have written at once, MiB: one tmpfs per kernel holds its working "
        "folder, /tmp, /dev/shm and HOME; its pages are memory, so this adds to memory_mb",
    ).tag(config=True)
    scratch_inodes = Integer(
        4096, help="files, folders and links a notebook may have at once in that tmpfs (nr_inodes)"
    ).tag(config=True)
    max_open_files = Integer(256, help="open file descriptors (RLIMIT_NOFILE)").tag(config=True)
    cgroup_memory_mb = Integer(
        3072, help="one limit, MiB, on a kernel's memory and the bytes it wrote to its tmpfs together: a memory "
        "cgroup per sandbox where one can be made (torchsteps.sandbox.memory_cgroup; grading as root); 0: none",
    ).tag(config=True)
    uid = Integer(
        64100, help="first of the unprivileged user ids kernels run as (when grading as root); each grading "
        "process takes its own id from uid, uid+1, ..., so that one sandbox's process limit and "
        "kill-everything cleanup never touch another's",
    ).tag(config=True)
    workdir_files = List(
        Unicode(), [],
        help="glob patterns of paths (relative to the notebook's folder, '/' separated) of files copied "
        "into the kernel's working copy; anything else there (other notebooks, files a student added such "
        "as a torch.py) stays outside. GuardedExecute adds the assignment's handed-out files (release/)",
    ).tag(config=True)
    runtime_dir = Unicode(
        "/var/tmp/torchsteps", help="where each sandbox's private folders (working copy, sockets) are made"
    ).tag(config=True)

    @validate("runtime_dir")
    def _runtime_dir_visible_to_kernels(self, proposal):
        # Every isolated kernel gets an empty /tmp and /dev/shm of its own (zygote.py), which would hide the
        # sockets and connection file made there: the kernel died before replying, with no hint why.
        path = os.path.realpath(proposal["value"])
        for hidden in ("/tmp", "/dev/shm"):
            if path == hidden or path.startswith(hidden + "/"):
                raise TraitError(
                    f"SandboxedKernelManager.runtime_dir {proposal['value']!r} is under {hidden}, which each kernel "
                    "gets empty (its own tmpfs), so a kernel could not reach its sockets there; choose a folder "
                    "elsewhere, such as the default /var/tmp/torchsteps"
                )
        return proposal["value"]

    warm_start = Bool(
        True, help="fork each kernel from a sandboxed parent that has already imported `preload` "
        "(torchsteps.sandbox.warm) instead of starting a new interpreter per notebook",
    ).tag(config=True)
    preload = List(Unicode(), ["numpy", "torch"], help="modules the warm parent imports once").tag(config=True)
    warmup = Unicode(
        "import torch; torch.ones(1, device='meta') + 1",
        help="code the warm parent runs once after the imports, to load what torch imports lazily "
        "(the first meta-device operation takes about 1.7 s)",
    ).tag(config=True)
    allow_unsandboxed = Bool(
        False, help="start kernels without the sandbox when none can be made (only on the instructor's explicit request)"
    ).tag(config=True)

    _sandbox_dir: str | None = None
    _sandboxed = False
    _zygote = None
    _cgroup = None  # a cold kernel's own memory cgroup (a warm kernel's is its parent's: Zygote.cgroup)
    _oom_kills_before = 0

    @property
    def harness_preloaded(self) -> bool:
        """Whether this kernel was forked with the grading harness already loaded (by its warm parent)."""
        return self._zygote is not None and getattr(self._zygote, "harness_preloaded", False)

    async def _async_pre_start_kernel(self, **kw):
        try:
            check_sandbox()
            self._sandboxed = True
        except SandboxUnavailable as why:
            if not self.allow_unsandboxed:
                raise SandboxUnavailable(
                    f"{why}. Grading stopped: student code would run with your permissions. "
                    "To grade without a sandbox anyway, set c.SandboxedKernelManager.allow_unsandboxed = True "
                    "(or pass --unsandboxed to `python -m torchsteps grade`)."
                ) from None
            self.log.warning("Running the kernel WITHOUT a sandbox (%s)", why)
            self._sandboxed = False
            return await super()._async_pre_start_kernel(**kw)
        if self.warm_start:
            self._zygote = get_zygote(self, list(self.preload), self.warmup)
            if not self._zygote.responsive():
                # A previous kernel (same user) may have killed or stopped it: start a new one.
                self._zygote.close()
                self._zygote = get_zygote(self, list(self.preload), self.warmup)
            root = self._zygote.root
            name = f"kernel-{os.urandom(6).hex()}"
        else:
            root = make_private_dir(self.runtime_dir)
            self._sandbox_dir = str(root)
            name = "kernel"
        # SIGINT to the process group would reach bwrap (the kernel's parent) and kill the sandbox;
        # ipykernel also takes interrupts as a message on the control channel.
        self.kernel_spec.interrupt_mode = "message"
        # ZeroMQ over UNIX sockets in a folder both sides see at the same path: the sandbox has no network.
        self.transport = "ipc"
        self.connection_file = str(root / "run" / f"{name}.json")
        self.ip = str(root / "run" / name)
        return await super()._async_pre_start_kernel(**kw)

    def _copy_workdir(self, cwd: str | None, dest: Path) -> None:
        """Copy the regular files of ``cwd`` whose relative path matches ``workdir_files`` to ``dest``.

        Links are never followed (a student's folder could hold one to a file of the course).
        """
        if not (cwd and os.path.isdir(cwd) and self.workdir_files):
            return
        for dirpath, dirnames, filenames in os.walk(cwd):
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
            for name in filenames:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, cwd).replace(os.sep, "/")
                if os.path.islink(path) or not any(fnmatch(rel, p) for p in self.workdir_files):
                    continue
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)

    @property
    def kernel_uid(self) -> int:
        """The user id this process's kernels run as (see ``uid``)."""
        return _claim_uid(self.uid, Path(self.runtime_dir))

    @property
    def isolated(self) -> bool:
        """Per-kernel namespaces and tmpfs: needs root to start the sandbox (the parent inside stays root)."""
        return os.geteuid() == 0

    def isolation_settings(self) -> dict:
        """What ``zygote.py`` needs to isolate each kernel (see its ``_isolate``); units: bytes, inodes."""
        return {
            "uid": self.kernel_uid if self.isolated else None,
            "workdir": SANDBOX_WORKDIR, "scratch": SANDBOX_SCRATCH, "given": SANDBOX_GIVEN,
            "scratch_bytes": self.scratch_mb * 1024 * 1024, "scratch_inodes": self.scratch_inodes,
            "keep_under_tmp": [r for r in _python_roots() if r.startswith("/tmp/")],
            "cpu_seconds": self.cpu_seconds,
        }

    def sandbox_command(self, kernel_cmd: list[str], root: Path, extra_ro_binds: dict[str, str] | None = None,
                        cpu_limit: bool = True, parent: bool = False) -> list[str]:
        """The full command line: ``prlimit ... bwrap ... setpriv ... <kernel_cmd>``.

        ``root`` holds ``work/`` (the kernel's working folder, also read-only at ``SANDBOX_GIVEN``) and
        ``run/`` (connection file and sockets); ``extra_ro_binds`` maps more host files to read-only
        paths inside. ``parent``: the command is ``zygote.py``, which stays root (only ``PARENT_CAPS``)
        when started by root and makes each kernel the unprivileged user itself.
        """
        mib = 1024 * 1024
        limits = [
            "prlimit",
            f"--as={self.memory_mb * mib}",
            *([f"--cpu={self.cpu_seconds}"] if cpu_limit else []),
            f"--nproc={self.max_processes}",
            f"--fsize={self.max_file_mb * mib}",
            f"--nofile={self.max_open_files}",
            "--core=0",
            "--",
        ]
        bwrap = [
            "bwrap",
            "--die-with-parent",
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr",
            "--symlink", "usr/bin", "/bin",
            "--symlink", "usr/lib", "/lib",
            "--symlink", "usr/sbin", "/sbin",
        ]
        if os.path.isdir("/usr/lib64"):
            bwrap += ["--symlink", "usr/lib64", "/lib64"]
        for etc in ("/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf"):
            if os.path.exists(etc):
                bwrap += ["--ro-bind", etc, etc]
        # /tmp first: binds made later show through it (a course or environment cloned under /tmp).
        bwrap += ["--perms", "1777", "--tmpfs", "/tmp"]
        for python_root in _python_roots():
            bwrap += _parents(python_root) + ["--ro-bind", python_root, python_root]
        bwrap += [
            "--proc", "/proc",
            "--dev", "/dev",
            *_parents(SANDBOX_WORKDIR), "--bind", str(root / "work"), SANDBOX_WORKDIR,
            *_parents(SANDBOX_GIVEN), "--ro-bind", str(root / "work"), SANDBOX_GIVEN,
            *_parents(str(root / "run")), "--bind", str(root / "run"), str(root / "run"),
        ]
        for source, target in (extra_ro_binds or {}).items():
            bwrap += _parents(target) + ["--ro-bind", source, target]
        bwrap += [
            "--chdir", SANDBOX_WORKDIR,
            "--clearenv",
            "--setenv", "HOME", SANDBOX_WORKDIR,
            "--setenv", "PATH", f"{os.path.dirname(kernel_cmd[0])}:/usr/bin:/bin",
            "--setenv", "LANG", "C.UTF-8",
            "--setenv", "IPYTHONDIR", "/tmp/.ipython",
            "--setenv", "MPLCONFIGDIR", "/tmp/.matplotlib",
            "--setenv", "MPLBACKEND", "Agg",
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
            # One thread per kernel: reproducible float sums, and parallel grading does not oversubscribe.
            "--setenv", "OMP_NUM_THREADS", "1",
        ]
        if os.geteuid() == 0 and parent:
            keep = ",".join("+" + cap for cap in PARENT_CAPS)
            drop = ["setpriv", "--inh-caps=-all", f"--bounding-set=-all,{keep}", "--no-new-privs", "--"]
        elif os.geteuid() == 0:
            # setpriv needs CAP_SETUID, so capabilities are dropped by setpriv (with the user), not bwrap.
            drop = [
                "setpriv", f"--reuid={self.kernel_uid}", f"--regid={self.kernel_uid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
            ]
        else:
            bwrap += ["--cap-drop", "ALL"]
            drop = []
        return limits + bwrap + ["--"] + drop + list(kernel_cmd)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if not self._sandboxed:
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        root = self._zygote.root if self._zygote else Path(self._sandbox_dir)
        self._copy_workdir(kw.pop("cwd", None), root / "work")
        chown_tree(root / "work", self.kernel_uid)
        chown_tree(root / "run", self.kernel_uid)
        os.chmod(self.connection_file, stat.S_IRUSR | stat.S_IWUSR)
        if self._zygote:
            # kernel_cmd is [python, -m, ipykernel_launcher, -f, <file>, ...]: the child runs the same app.
            self._oom_kills_before = self._zygote.cgroup.oom_kills() if self._zygote.cgroup else 0
            process = self._zygote.start_kernel(list(kernel_cmd[3:]))
            self.provisioner.process, self.provisioner.pid, self.provisioner.pgid = process, process.pid, None
            self._reconcile_connection_info(self.provisioner.connection_info)
            return
        kw["cwd"] = str(root)
        # The same per-kernel isolation as a warm kernel: zygote.py isolates, then becomes the kernel in
        # the same process (kernel_cmd is [python, -m, ipykernel_launcher, ...]).
        settings = dict(self.isolation_settings(), preload=[])
        kernel_cmd = [kernel_cmd[0], ZYGOTE_PATH_INSIDE, json.dumps(settings), "--exec", *kernel_cmd[3:]]
        # The kernel's own stdout/stderr (not the notebook's output, which travels over ZeroMQ) would
        # otherwise land in the grader's terminal, and a student can flood it.
        kw["stdout"] = kw["stderr"] = subprocess.DEVNULL
        command = self.sandbox_command(kernel_cmd, root, {str(ZYGOTE_SCRIPT): ZYGOTE_PATH_INSIDE}, parent=True)
        self._cgroup = memory_cgroup_or_none(self.cgroup_memory_mb, self.log)
        if self._cgroup is not None:
            command = self._cgroup.wrap(command)
        return await super()._async_launch_kernel(command, **kw)

    def memory_limit_reason(self) -> str:
        """Why the kernel died, when its memory cgroup's limit killed it (``cgroup_memory_mb``); else ""."""
        group = self._zygote.cgroup if self._zygote is not None else self._cgroup
        if group is None or group.oom_kills() <= self._oom_kills_before:
            return ""
        return (f"the notebook used more than its {self.cgroup_memory_mb} MiB of memory (the kernel's memory and "
                "the files it wrote, together; c.SandboxedKernelManager.cgroup_memory_mb)")

    def scratch_usage(self) -> dict | None:
        """``bytes_total``, ``bytes_free`` (bytes) and ``inodes_total``, ``inodes_free`` of the running
        kernel's tmpfs (``scratch_mb``, ``scratch_inodes``); None when unknown (cold or unisolated kernel)."""
        if self._zygote is None or not self.isolated:
            return None
        try:
            reply = self._zygote.request(cmd="usage")
        except ZygoteError:
            return None
        return None if "error" in reply else reply

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        # jupyter_client polls every 0.1 s until a stopped kernel is gone; a kernel forked by the warm parent
        # is gone a few ms after its signal, so the default cost about 0.1 s a notebook at every shutdown.
        await super()._async_wait(pollinterval=min(pollinterval, 0.005))

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if self._zygote is not None and not restart:
            self._zygote.reset()
            self._zygote = None
        if self._sandbox_dir and not restart:
            remove_private_dir(self._sandbox_dir)
            self._sandbox_dir = None
        if self._cgroup is not None and not restart:
            self._cgroup.remove()
            self._cgroup = None
