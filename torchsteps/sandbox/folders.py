"""The folders a sandbox is made of, on the host and inside.

Each sandbox (one cold kernel, or one warm parent and the kernels forked from it) gets a private folder
under ``runtime_dir`` holding ``work/`` (bound as the kernel's working folder, :data:`SANDBOX_WORKDIR`) and
``run/`` (connection file and ZeroMQ sockets, bound at the same path inside and out).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

__all__ = ["SANDBOX_WORKDIR", "SANDBOX_SCRATCH", "SANDBOX_GIVEN", "make_private_dir", "chown_tree"]

SANDBOX_WORKDIR = "/home/student/work"
# Per-kernel isolation (issue 11): the kernel's tmpfs (its HOME, holding work/, tmp/, shm/, caches) and the
# read-only folder its working copy is made from (the grader fills it with `workdir_files`).
SANDBOX_SCRATCH = "/home/student"
SANDBOX_GIVEN = "/opt/torchsteps/given"


def make_private_dir(runtime_dir: str | Path) -> Path:
    """A new private folder ``<runtime_dir>/torchsteps-kernel-*/`` with empty ``run/`` and ``work/``."""
    # Not under /tmp: inside the sandbox /tmp is the kernel's own (emptied between warm kernels),
    # and the run/ folder must keep the same path on both sides.
    base = Path(runtime_dir)
    base.mkdir(mode=0o711, parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="torchsteps-kernel-", dir=base))
    os.chmod(root, 0o711)
    for sub in ("run", "work"):
        (root / sub).mkdir()
    return root


def chown_tree(path: Path, uid: int) -> None:
    """Hand ``path`` and everything under it to the kernel user ``uid`` (only when grading as root)."""
    if os.geteuid() != 0:
        return
    # Never follow a link: a kernel could plant one pointing at a file it wants root to hand over.
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, uid, uid, follow_symlinks=False)
        for name in filenames + dirnames:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


_claimed: dict[str, tuple[int, object]] = {}


def claim_uid(base: int, lock_dir: Path, kind: str = "uid") -> int | None:
    """A user id from ``base .. base+999`` that no other live grading process holds for ``kind``; ``None`` if none is free.

    Held with an ``flock`` on ``<lock_dir>/<kind>-<id>.lock`` for the life of the process (the lock goes
    with the process, also when it is killed). Kernels (``kind="uid"``) and grader processes
    (``kind="grader-uid"``) each get their own id, so one's process limit and cleanup never touch another's.
    """
    held = _claimed.get(kind)
    if held is not None and held[0] >= base:
        return held[0]
    lock_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
    for uid in range(base, base + 1000):
        handle = open(lock_dir / f"{kind}-{uid}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _claimed[kind] = (uid, handle)
        return uid
    return None
