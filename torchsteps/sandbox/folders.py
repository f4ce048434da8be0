"""The folders a sandbox is made of, on the host and inside.

Each sandbox (one cold kernel, or one warm parent and the kernels forked from it) gets a private folder
under ``runtime_dir`` holding ``work/`` (bound as the kernel's working folder, :data:`SANDBOX_WORKDIR`) and
``run/`` (connection file and ZeroMQ sockets, bound at the same path inside and out).
"""

from __future__ import annotations

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
