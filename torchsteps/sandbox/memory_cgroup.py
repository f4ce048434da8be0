"""One memory cgroup per sandbox: a kernel's own memory and the bytes it wrote to its tmpfs count together.

The kernel's ``/tmp``, ``/dev/shm`` and working folder are a tmpfs (``scratch_mb``), whose pages are memory;
``RLIMIT_AS`` (``memory_mb``) bounds each process's address space but not those pages, so without a cgroup a
notebook could hold ``memory_mb`` in a process *and* ``scratch_mb`` in files. The kernel charges tmpfs pages
to the memory cgroup of the process that wrote them (Documentation/admin-guide/cgroup-v1/memory.rst, "shmem";
cgroup-v2.rst, "Memory Ownership"), so one limit on the sandbox's cgroup bounds both at once. When it is
reached the kernel's OOM killer ends the notebook's kernel (``zygote.py`` makes the kernel its first
victim with ``oom_score_adj`` 1000), and :meth:`MemoryCgroup.oom_kills` lets the grader say why.

cgroup v1 (a writable ``memory`` hierarchy, as when grading as root in a container) and v2 (a delegated
subtree with the ``memory`` controller) are both used when available; otherwise :meth:`MemoryCgroup.create`
returns ``None`` with the reason, and only the per-process limits apply.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

__all__ = ["MemoryCgroup", "CgroupUnavailable", "memory_cgroup_or_none"]


class CgroupUnavailable(OSError):
    """No memory cgroup can be made here (no writable memory hierarchy); the message says what is missing."""


def _own_memory_cgroup(cgroup_file: str = "/proc/self/cgroup", mountinfo_file: str = "/proc/self/mountinfo") -> tuple[Path, int]:
    """``(folder of this process's memory cgroup, cgroup version)`` from /proc/self/cgroup and mountinfo
    (v1's ``memory`` hierarchy when there is one, else the v2 unified one)."""
    paths = {}
    for line in Path(cgroup_file).read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            paths[1] = path
        elif hierarchy == "0" and controllers == "":
            paths[2] = path
    for line in Path(mountinfo_file).read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields, fstype = before.split(), after.split()
        root, mountpoint = fields[3], fields[4]
        if fstype[0] == "cgroup" and 1 in paths and "memory" in fstype[2].split(","):
            version, path = 1, paths[1]
        elif fstype[0] == "cgroup2" and 2 in paths and 1 not in paths:
            version, path = 2, paths[2]
        else:
            continue
        relative = os.path.relpath(path, root) if path.startswith(root) else "."
        folder = Path(mountpoint) / relative
        if folder.is_dir():
            return folder.resolve(), version
    raise CgroupUnavailable("no memory cgroup hierarchy is mounted for this process")


class MemoryCgroup:
    """A child memory cgroup of this process's own, with a limit in bytes; processes are moved into it."""

    def __init__(self, folder: Path, version: int):
        self.folder, self.version = folder, version

    @classmethod
    def create(cls, limit_bytes: int) -> "MemoryCgroup":
        """A new cgroup limited to ``limit_bytes`` of memory (RAM, and swap where it is accounted).

        Raises :class:`CgroupUnavailable` when none can be made (no hierarchy, no permission, no controller).
        """
        parent, version = _own_memory_cgroup()
        folder = parent / f"torchsteps-{uuid.uuid4().hex[:12]}"
        try:
            folder.mkdir()
        except OSError as e:
            raise CgroupUnavailable(f"cannot create a memory cgroup under {parent}: {e.strerror}") from None
        group = cls(folder, version)
        try:
            if version == 1:
                (folder / "memory.limit_in_bytes").write_text(str(limit_bytes))
                memsw = folder / "memory.memsw.limit_in_bytes"  # present when swap is accounted
                if memsw.exists():
                    memsw.write_text(str(limit_bytes))
            else:
                (folder / "memory.max").write_text(str(limit_bytes))
                swap = folder / "memory.swap.max"
                if swap.exists():
                    swap.write_text("0")
        except OSError as e:
            group.remove()
            raise CgroupUnavailable(f"cannot set the memory limit of {folder}: {e.strerror or e}") from None
        return group

    @property
    def procs_file(self) -> Path:
        return self.folder / "cgroup.procs"

    def add(self, pid: int) -> None:
        """Move process ``pid`` (host pid) into the cgroup; its later children are born in it."""
        self.procs_file.write_text(str(pid))

    def add_session(self, sid: int) -> int:
        """Move every process of session ``sid`` (host pids, e.g. a sandbox started with
        ``start_new_session``); returns how many were moved. Memory they already use stays where it was
        charged (v1 does not move charges by default), so a warm parent's imports are not counted."""
        moved = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
            if int(fields[3]) == sid:  # field 6 of stat: the session id
                try:
                    self.add(int(entry))
                    moved += 1
                except OSError:
                    pass  # it exited meanwhile
        return moved

    def wrap(self, command: list[str]) -> list[str]:
        """``command`` started inside the cgroup from its first instruction (a shell joins, then execs it)."""
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.procs_file), *command]

    def oom_kills(self) -> int:
        """How many processes the limit has killed so far (``oom_kill`` of memory.oom_control / memory.events)."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            for line in (self.folder / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def remove(self) -> None:
        """Remove the cgroup once its processes are gone (they were killed just before: a moment is allowed)."""
        for _ in range(50):
            try:
                self.folder.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)


_warned = False


def memory_cgroup_or_none(limit_mb: int, log=None) -> MemoryCgroup | None:
    """A :class:`MemoryCgroup` of ``limit_mb`` MiB, or None (``limit_mb`` 0, or none can be made here: said
    once per process in ``log``, and the per-process limits still apply)."""
    global _warned
    if not limit_mb:
        return None
    try:
        return MemoryCgroup.create(limit_mb * 1024 * 1024)
    except (CgroupUnavailable, OSError) as why:
        if log is not None and not _warned:
            log.warning("No memory cgroup for the sandbox (%s): a kernel's memory and the files it writes are "
                        "limited separately (memory_mb per process, scratch_mb for files)", why)
        _warned = True
        return None
