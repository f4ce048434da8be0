"""The folders a sandbox is made of, on the host and inside.

Each sandbox (one cold kernel, or one warm parent and the kernels forked from it) gets a private folder
under ``runtime_dir`` holding ``work/`` (bound as the kernel's working folder, :data:`SANDBOX_WORKDIR`) and
``run/`` (connection file and ZeroMQ sockets, bound at the same path inside and out).

The folders hold a student's files (the working copy of the notebook being graded), so none may outlive
its grading process. The process keeps a list of the folders it made (:func:`remove_all_private_dirs`
removes them, also from a signal handler, and even while a sandbox was still starting) and holds an
``flock`` on each for as long as it lives. A process killed with SIGKILL cannot clean up: the next
:func:`make_private_dir` in the same ``runtime_dir`` removes every folder whose lock is free, that is,
whose owner is dead (:func:`sweep_orphans`).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import logging
import os
import secrets
import shutil
import stat
import subprocess
import time
from pathlib import Path

__all__ = [
    "SANDBOX_WORKDIR", "SANDBOX_SCRATCH", "SANDBOX_GIVEN", "PRIVATE_DIR_PREFIX", "RuntimeDirError",
    "SIGNAL_REMOVAL_TIMEOUT_S", "prepare_runtime_dir", "make_private_dir", "empty_folder",
    "remove_private_dir", "remove_all_private_dirs", "sweep_orphans", "remove_tree", "removals_within", "chown_tree",
]

log = logging.getLogger(__name__)

SANDBOX_WORKDIR = "/home/student/work"
# Per-kernel isolation (issue 11): the kernel's tmpfs (its HOME, holding work/, tmp/, shm/, caches) and the
# read-only folder its working copy is made from (the grader fills it with `workdir_files`).
SANDBOX_SCRATCH = "/home/student"
SANDBOX_GIVEN = "/opt/torchsteps/given"


PRIVATE_DIR_PREFIX = "torchsteps-kernel-"
# A folder is made, then locked a few microseconds later; a sweep in another process must not take that
# moment for a dead owner. Only folders unchanged for this long are swept.
ORPHAN_AGE_S = 60.0

# On SIGTERM or Ctrl-C each removal gets this long: a batch system follows SIGTERM with SIGKILL within seconds.
SIGNAL_REMOVAL_TIMEOUT_S = 10.0

# The folders this process made and has not removed yet, each with the descriptor that holds its lock.
_owned: dict[Path, int | None] = {}


class RuntimeDirError(RuntimeError):
    """``runtime_dir`` cannot be used: another user could change it, or it cannot be made (the message
    says which and what to do)."""


_MAX_LINKS = 40  # as the kernel's path resolution (ELOOP)

# In a rootless container (`unshare -r`, Apptainer --userns) / and the system's folders belong to the
# overflow user id 65534, and so does everything of every other user outside the container (another
# user's /home/bob or /var/tmp/x too). Of that owner's folders only these are taken for the system's.
_SYSTEM_FOLDERS = frozenset({
    "/", "/home", "/media", "/mnt", "/opt", "/run", "/srv", "/tmp", "/usr", "/usr/local",
    "/var", "/var/cache", "/var/lib", "/var/local", "/var/lock", "/var/run", "/var/tmp",
})


def _shared(info: os.stat_result) -> bool:
    """Whether users other than the owner (and root) may make and rename entries in this folder."""
    return bool(info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _unsafe_step(path: str, info: os.stat_result, trusted: set[int], me: int, last: bool) -> str | None:
    """Why ``path`` (a part of runtime_dir, ``info`` its lstat, ``trusted`` the users who may own it) lets
    another user change runtime_dir; None when it does not."""
    if stat.S_ISLNK(info.st_mode):
        # A link's owner may replace it where the folder holding it is sticky (/var/tmp).
        return None if info.st_uid in trusted else f"goes through the link {path}, made by user id {info.st_uid}"
    where = "" if last else f"lies in {path}, which "
    if info.st_uid not in trusted or (last and info.st_uid != me):
        return f"{where}belongs to user id {info.st_uid}, not to you (user id {me})"
    if _shared(info) and (last or not info.st_mode & stat.S_ISVTX):  # in a sticky folder, others cannot rename ours
        who = "others" if info.st_mode & stat.S_IWOTH else "its group"
        return f"{where}may be written by {who} (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _walk(base: Path, me: int, make: bool) -> tuple[str, os.stat_result | None, str | None]:
    """Resolve ``base`` as the kernel does, one part at a time: the folder it names, its lstat (None when
    it is still to be made) and None; or the first part another user could change, its lstat and why.

    A folder is checked as one on the way only when the walk goes into it (after ``x/..`` it never did);
    the folder reached, as the last. With ``make``, a missing folder is made (mode 711) inside a folder
    that has passed; without, it is taken as one this user will make.
    """
    top = os.lstat("/")

    def trusted(path: str) -> set[int]:
        return {0, me, top.st_uid} if path in _SYSTEM_FOLDERS else {0, me}

    walked: list[tuple[str, os.stat_result | None]] = [("/", top)]  # so that ".." goes back one
    parts = list(Path(os.getcwd(), base).parts[1:])  # ".." kept: it applies after the links before it
    links = 0
    while parts:
        name = parts.pop(0)
        if name == "..":
            if walked[-1][1] is None:  # the kernel refuses a missing folder even with ".." after it
                raise FileNotFoundError(errno.ENOENT, "'..' after a folder that does not exist", walked[-1][0])
            if len(walked) > 1:
                walked.pop()
            continue
        parent, parent_info = walked[-1]
        step = os.path.join(parent, name)
        if parent_info is None:  # inside a folder still to be made: this one is too
            walked.append((step, None))
            continue
        reason = _unsafe_step(parent, parent_info, trusted(parent), me, last=False)
        if reason:
            return parent, parent_info, reason
        try:
            info = os.lstat(step)
        except FileNotFoundError:
            if not make:
                walked.append((step, None))
                continue
            try:
                os.mkdir(step, 0o711)  # in a folder that has passed, so nobody else can swap it afterwards
            except FileExistsError:  # made meanwhile: checked like any other
                pass
            info = os.lstat(step)
        if stat.S_ISLNK(info.st_mode):
            reason = _unsafe_step(step, info, trusted(step), me, last=False)
            if reason:
                return step, info, reason
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, "too many links", step)
            target = Path(os.readlink(step))
            parts = list(target.parts[1:] if target.is_absolute() else target.parts) + parts
            if target.is_absolute():
                walked = walked[:1]
        elif not stat.S_ISDIR(info.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", step)
        else:
            walked.append((step, info))
    path, info = walked[-1]
    if path == "/":
        raise IsADirectoryError(errno.EISDIR, "it resolves to / itself", str(base))
    return path, info, None if info is None else _unsafe_step(path, info, {me}, me, last=True)


def prepare_runtime_dir(runtime_dir: str | Path) -> Path:
    """The folder ``runtime_dir`` resolves to (absolute, no links), after checking that no other user can
    change it; missing folders are made (mode 711).

    The default, ``/var/tmp/torchsteps``, lies in a folder every user may write to: another user could have
    made it first, or made it a link, and then plant links where grading (perhaps as root) writes its lock
    files and the students' files. So every folder on the way, and every link followed, must belong to root
    or to this user; folders on the way may be writable by others only when sticky (``/tmp``, ``/var/tmp``);
    the folder reached must be this user's and writable by nobody else, and not ``/``. The path is checked
    whole before anything is made, then walked again making what is missing (each folder inside one that
    has passed again), so a refused path has nothing made. In a rootless container, the system's folders
    belong to the overflow user id (65534): that owner counts as root for :data:`_SYSTEM_FOLDERS` only.

    Raises:
        RuntimeDirError: with the reason (another user's folder or link on the way, a folder others may
            write to, a part that is not a folder, a link loop, a folder that cannot be made) and what to do.
    """
    base = Path(runtime_dir)
    where = f"SandboxedKernelManager.runtime_dir {str(base)!r}"
    me = os.geteuid()
    try:
        path, info, reason = _walk(base, me, make=False)
        if reason is None:
            path, info, reason = _walk(base, me, make=True)
    except OSError as why:
        detail = f"{why.strerror}: {why.filename}" if why.filename and why.strerror else str(why)
        raise RuntimeDirError(f"{where} cannot be used: {detail}; choose a folder of your own in nbgrader_config.py") from None
    if reason is None:
        return Path(path)
    if not reason.startswith(("lies in", "goes through")) and str(Path(os.getcwd(), base)) != path:
        reason = f"resolves to {path}, which {reason}"
    advice = "choose a folder of your own in nbgrader_config.py"
    if stat.S_ISDIR(info.st_mode) and "may be written" in reason:
        if info.st_mode & stat.S_ISVTX:  # shared on purpose (/var/tmp): never suggest changing it
            advice = f"choose a folder of your own inside it in nbgrader_config.py, such as {os.path.join(path, 'torchsteps')!r}"
        elif info.st_uid == me:  # shared by mistake, and yours to change
            advice = f"run `chmod go-w {path}`"
    raise RuntimeDirError(f"{where} {reason}, so another user could change it; {advice}")


def make_private_dir(runtime_dir: str | Path) -> Path:
    """A new private folder ``<runtime_dir>/torchsteps-kernel-*/`` with empty ``run/`` and ``work/``.

    Owned by this process until :func:`remove_private_dir` (or :func:`remove_all_private_dirs`, at exit or
    on a signal). Folders of dead grading processes in ``runtime_dir`` are removed first (:func:`sweep_orphans`).
    """
    # Not under /tmp: inside the sandbox /tmp is the kernel's own (emptied between warm kernels),
    # and the run/ folder must keep the same path on both sides.
    base = prepare_runtime_dir(runtime_dir)
    try:
        sweep_orphans(base)
    except Exception:  # noqa: BLE001 - another process's leftovers never stop this one from grading
        log.warning("could not sweep the leftover sandbox folders in %s", base, exc_info=True)
    while True:
        root = base / f"{PRIVATE_DIR_PREFIX}{secrets.token_hex(6)}"
        # Listed before it exists: a signal handler that runs from here on (between any two lines) removes it.
        _owned[root] = None
        try:
            os.mkdir(root, 0o711)
            break
        except FileExistsError:
            del _owned[root]
    os.chmod(root, 0o711)  # whatever the umask
    handle = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    _owned[root] = handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)  # free: nobody else knows the name yet
    except OSError:  # a file system without flock: no sweep can lock it either, so it is never swept
        pass
    for sub in ("run", "work"):
        (root / sub).mkdir()
    return root


def remove_tree(path: str | Path, timeout_s: float = 300) -> bool:
    """Remove the folder ``path`` and everything under it, without following links; True when it is gone.

    A kernel that is not isolated (grading without root) writes into its folders as the grading user and
    can make removal hard: folders nested deeper than Python's recursion limit (``shutil.rmtree`` of
    Python 3.11 recurses and raises ``RecursionError``) or without write permission (``chmod 500``).
    Those fall back to ``chmod -R u+rwx`` and ``rm -rf --one-file-system`` (coreutils walk a tree without
    recursion and never follow links), which share ``timeout_s`` seconds. With a short ``timeout_s`` (the
    signal path) or inside :func:`removals_within`, ``shutil.rmtree``, which no time limit stops, is
    skipped. Never raises.
    """
    path = Path(path)
    deadline = time.monotonic() + timeout_s
    if _removals_deadline is not None:
        deadline = min(deadline, _removals_deadline)
    if timeout_s > SIGNAL_REMOVAL_TIMEOUT_S and _removals_deadline is None:
        try:
            shutil.rmtree(path)
            return True
        except (OSError, RecursionError):
            pass
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": False}

    def rm() -> bool:
        if deadline > time.monotonic():
            subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], timeout=deadline - time.monotonic(), **quiet)
        return not os.path.lexists(path)

    handle = None
    try:
        if rm():
            return True
        try:
            # O_PATH: also a folder without read permission (chmod 000) can be opened.
            handle = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:  # a link or a file now: rm -rf removes just that
            pass
        # Through the descriptor: the folder checked, even if a link took its name since (chmod follows a
        # link given to it); without /proc, no chmod. The trailing "/" makes chmod -R go into it.
        if handle is not None and deadline > time.monotonic() and os.path.isdir(f"/proc/self/fd/{handle}"):
            subprocess.run(["chmod", "-R", "u+rwx", "--", f"/proc/self/fd/{handle}/"], pass_fds=(handle,),
                           timeout=deadline - time.monotonic(), **quiet)
        rm()
    except (OSError, subprocess.SubprocessError):
        pass
    finally:
        if handle is not None:
            os.close(handle)
    return not os.path.lexists(path)


_removals_deadline: float | None = None


@contextlib.contextmanager
def removals_within(seconds: float):
    """Every :func:`remove_tree` inside the ``with`` ends within ``seconds`` of its start, all together (the
    signal path: a batch system follows SIGTERM with SIGKILL within seconds; what is left is swept later)."""
    global _removals_deadline
    before = _removals_deadline
    _removals_deadline = time.monotonic() + seconds
    if before is not None:  # nested: the outer limit still holds
        _removals_deadline = min(before, _removals_deadline)
    try:
        yield
    finally:
        _removals_deadline = before


def empty_folder(folder: str | Path) -> bool:
    """Remove everything inside ``folder`` (never following links), keeping the folder; True when it is
    empty. Never raises: a folder that cannot be listed (a kernel that is not isolated may ``chmod 000`` it)
    or an entry that cannot be removed gives False, and the caller starts afresh rather than reuse it."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if not remove_tree(entry.path):
                        return False
                else:
                    os.unlink(entry.path)
        return not os.listdir(folder)
    except OSError:
        return False


def remove_private_dir(root: str | Path, timeout_s: float = 300) -> None:
    """Remove ``root`` (made by :func:`make_private_dir` in this process) and give up its lock. Never raises:
    a folder that cannot be removed (within ``timeout_s`` per step, :func:`remove_tree`) is logged, and a
    later :func:`sweep_orphans` tries again."""
    root = Path(root)
    try:
        if not remove_tree(root, timeout_s):
            log.warning("could not remove the sandbox folder %s (it holds a student's files)", root)
    finally:
        handle = _owned.pop(root, None)
        if handle is not None:
            try:
                os.close(handle)
            except OSError:
                pass


def _forget_after_fork() -> None:
    # A forked child does not own its parent's folders: at its exit it must not remove them. (Its copies
    # of the lock descriptors are closed; the parent's lock stays, held by the parent's descriptors.)
    for handle in _owned.values():
        if handle is not None:
            try:
                os.close(handle)
            except OSError:
                pass
    _owned.clear()
    global _removals_deadline
    _removals_deadline = None  # the signal path's deadline is the parent's
    for _, handle in _claimed.values():  # nor its user ids: its own sandboxes claim their own
        try:
            os.close(handle)
        except OSError:
            pass
    _claimed.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


@atexit.register  # registered before the warm parents' handlers, so it runs after them
def remove_all_private_dirs(timeout_s: float = 300) -> None:
    """Remove every folder this process made and still holds (at exit, or on SIGTERM or Ctrl-C: then with
    a short ``timeout_s``, as a batch system follows SIGTERM with SIGKILL within seconds)."""
    for root in list(_owned):
        try:
            remove_private_dir(root, timeout_s)
        except Exception:  # noqa: BLE001 - one folder never keeps the others
            log.warning("could not remove the sandbox folder %s", root, exc_info=True)


def sweep_orphans(base: str | Path, min_age_s: float = ORPHAN_AGE_S) -> list[Path]:
    """Remove the private folders in ``base`` whose owner is dead (nobody holds their lock); the removed ones.

    A folder younger than ``min_age_s`` seconds (by its mtime) is kept: its owner may not have locked it
    yet. Folders of other users that this process may not open are left alone.
    """
    removed = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        path = Path(entry.path)
        if not entry.name.startswith(PRIVATE_DIR_PREFIX) or path in _owned:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or now - entry.stat(follow_symlinks=False).st_mtime < min_age_s:
                continue
            handle = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its owner is alive
            os.close(handle)
            continue
        try:
            if remove_tree(path):
                removed.append(path)
        finally:
            os.close(handle)
    return removed


def chown_tree(path: Path, uid: int) -> None:
    """Hand ``path`` and everything under it to the kernel user ``uid`` (only when grading as root)."""
    if os.geteuid() != 0:
        return
    # Never follow a link: a kernel could plant one pointing at a file it wants root to hand over.
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, uid, uid, follow_symlinks=False)
        for name in filenames + dirnames:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


_claimed: dict[str, tuple[int, int]] = {}


def claim_uid(base: int, lock_dir: Path, kind: str = "uid") -> int | None:
    """A user id from ``base .. base+999`` that no other live grading process holds for ``kind``; ``None`` if none is free.

    Held with an ``flock`` on ``<lock_dir>/<kind>-<id>.lock`` for the life of the process (the lock goes
    with the process, also when it is killed). Raises :class:`RuntimeDirError` where ``lock_dir`` is unsafe
    (:func:`prepare_runtime_dir`) or its file system cannot lock files (some network file systems). Kernels (``kind="uid"``) and grader processes
    (``kind="grader-uid"``) each get their own id, so one's process limit and cleanup never touch another's.
    """
    held = _claimed.get(kind)
    if held is not None and held[0] >= base:
        return held[0]
    lock_dir = prepare_runtime_dir(lock_dir)
    for uid in range(base, base + 1000):
        try:
            # Never through a link, never truncated: the file only carries the lock.
            handle = os.open(lock_dir / f"{kind}-{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as why:
            if why.errno in (errno.ELOOP, errno.EACCES):  # a link, or another user's file: not this id
                continue
            raise
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as why:
            os.close(handle)
            if why.errno in (errno.EWOULDBLOCK, errno.EAGAIN):  # held by another live grading process
                continue
            # Without locks two grading processes could share an id (and end each other's kernels).
            raise RuntimeDirError(f"SandboxedKernelManager.runtime_dir {str(lock_dir)!r} cannot be used: its files "
                                  f"cannot be locked ({why.strerror}); choose a folder on a local disk") from None
        _claimed[kind] = (uid, handle)
        return uid
    return None
