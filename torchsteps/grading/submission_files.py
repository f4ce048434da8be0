"""Which files of a submission are graded: one walk shared by staging, the incremental digest and the Dask client.

A submission folder is the student's to fill, so what it holds is untrusted:

- only regular files are taken. Links are never followed (a link could bring an instructor's file, a
  source notebook with its solutions, into the graded copy and the student's feedback) and special files
  (FIFOs, devices, sockets) are never opened (``/dev/zero`` never ends; a FIFO blocks a reader);
- sizes are capped (:class:`SubmissionLimits`): a file larger than ``max_file_mb`` is left out, and so is
  every file past ``max_submission_mb`` or ``max_files`` in all. Notebooks at the top of the folder come
  first, so the graded notebooks are the last thing to be left out. Only ``lstat`` is read before deciding,
  so an 8 GiB sparse file costs nothing, and reading never goes past the cap, even for a file that grew;
- ``.ipynb_checkpoints`` and ``__pycache__`` are editor and interpreter leftovers, never graded, and folders
  nested deeper than :data:`MAX_DEPTH` are not walked.

Each file left out is named, with the reason, in the notes of the student's row
(:meth:`SubmissionFiles.notes`). A folder or file that cannot be read is listed in
:attr:`SubmissionFiles.unreadable`; staging turns it into the row's reason, the digest hashes the error.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from traitlets import Integer
from traitlets.config import Configurable

__all__ = ["SKIPPED_FOLDERS", "LINK", "SPECIAL", "TOO_LARGE", "OVER_TOTAL", "TOO_DEEP", "MAX_DEPTH", "SubmissionLimits", "SubmissionFiles", "FileTooLarge", "WriteFailed", "list_submission",
           "read_file", "copy_file", "file_digest", "format_size"]

SKIPPED_FOLDERS = frozenset({".ipynb_checkpoints", "__pycache__"})
_MIB = 1024 * 1024
_CHUNK = _MIB
# The reasons a file is left out, as the notes name them.
LINK, SPECIAL, TOO_LARGE, OVER_TOTAL, TOO_DEEP = "a link", "not a regular file", "too large", "over the submission's limits", "too deep"
# Folders nested deeper are not walked: no notebook lives there, and the standard library's recursive tree
# functions (shutil.rmtree, os.makedirs) would hit Python's recursion limit at about 1,000 levels.
MAX_DEPTH = 32


class SubmissionLimits(Configurable):
    """How much of one submission grading copies, hashes and sends to a Dask worker.

    Set in ``nbgrader_config.py``, e.g. ``c.SubmissionLimits.max_file_mb = 20``. The defaults leave room
    for notebooks with plots and a small data file, and keep one student from filling the grading
    machine's memory or disk.
    """

    max_file_mb = Integer(100, help="largest file of a submission that is graded, MiB; a larger one is left out "
                                    "(a larger notebook cannot be graded: the row says why)").tag(config=True)
    max_submission_mb = Integer(500, help="most bytes of one submission that are graded, MiB; files past it are "
                                          "left out, notebooks at the top of the folder first in").tag(config=True)
    max_files = Integer(1000, help="most files of one submission that are graded; files past it are left out")\
        .tag(config=True)

    @property
    def max_entries(self) -> int:
        """How many files and folders of a submission are looked at (listed) at most: ten times ``max_files``,
        so that a folder of a million files costs neither the memory nor the time of listing them all."""
        return 10 * self.max_files

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb * _MIB

    @property
    def max_submission_bytes(self) -> int:
        return self.max_submission_mb * _MIB


class FileTooLarge(OSError):
    """A file that grew past the cap between listing and reading."""


def format_size(n: int) -> str:
    """``n`` bytes for a person: ``512 bytes``, ``3.2 MiB``, ``8.0 GiB``."""
    if n < 1024:
        return f"{n} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


@dataclass
class SubmissionFiles:
    """The outcome of :func:`list_submission`: relative paths use ``/``, from the submission folder."""

    taken: list[tuple[str, int]] = field(default_factory=list)  # (path, size in bytes) of each file graded
    folders: list[str] = field(default_factory=list)  # the folders at the top, empty ones too (a copy keeps them)
    left_out: list[tuple[str, str, str]] = field(default_factory=list)  # (path, reason, detail)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, error) of what could not be listed
    limits: SubmissionLimits | None = None  # the caps it was listed under (None: none)
    truncated: bool = False  # the walk stopped at limits.max_entries: the rest was not looked at

    def notes(self, shown: int = 10) -> list[str]:
        """One note per kind of reason, naming up to ``shown`` files each (10,000 files make one short line)."""
        headings = {LINK: "left out, not followed", SPECIAL: "left out, not followed",
                    TOO_DEEP: f"left out, nested deeper than {MAX_DEPTH} folders"}
        if self.limits is not None:
            headings[TOO_LARGE] = f"left out, larger than {self.limits.max_file_mb} MiB"
            headings[OVER_TOTAL] = (f"left out, past the {self.limits.max_submission_mb} MiB or "
                                    f"{self.limits.max_files} files a submission may hold")
        groups: dict[str, list[str]] = {}
        for path, why, detail in self.left_out:
            groups.setdefault(headings[why], []).append(f"{path} ({detail})")
        notes = []
        if self.truncated and self.limits is not None:
            notes.append(f"left out, not looked at: everything past the first {self.limits.max_entries} files and "
                         "folders of the submission")
        for heading in dict.fromkeys(headings.values()):
            names = groups.get(heading, [])
            if names:
                more = f" and {len(names) - shown} more" if len(names) > shown else ""
                notes.append(f"{heading}: {', '.join(names[:shown])}{more}")
        return notes


def _walk(folder: str, found: list, outcome: SubmissionFiles, max_entries: int | None, pinned=frozenset()) -> None:
    """Every entry under ``folder``, links not entered, at most ``max_entries`` of them (then
    ``outcome.truncated``); a stack, not recursion (a path too long for the system is an unreadable entry)."""
    stack = [(folder, "")]
    seen = 0
    while stack:
        top, relative = stack.pop()
        try:
            with os.scandir(top) as listing:
                entries = []
                for entry in listing:  # read lazily: one folder of a million entries stops at the bound
                    seen += 1
                    if max_entries is not None and seen > max_entries:
                        outcome.truncated = True
                        break
                    entries.append(entry)
                entries.sort(key=lambda e: e.name)
        except OSError as why:
            outcome.unreadable.append((relative or ".", why.strerror or str(why)))
            continue
        if outcome.truncated:
            stack.clear()
        for entry in entries:
            path = f"{relative}/{entry.name}" if relative else entry.name
            if path in pinned:  # listed before the walk
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as why:
                outcome.unreadable.append((path, why.strerror or str(why)))
                continue
            if stat.S_ISDIR(st.st_mode):
                if entry.name in SKIPPED_FOLDERS:
                    continue
                if path.count("/") + 1 > MAX_DEPTH:
                    outcome.left_out.append((path, TOO_DEEP, "a folder"))
                    continue
                if not relative:
                    outcome.folders.append(path)
                if not outcome.truncated:
                    stack.append((entry.path, path))
            else:
                found.append((path, st))
    outcome.folders.sort()
    outcome.unreadable.sort()


def list_submission(folder: Path, limits: SubmissionLimits | None = None, first: tuple[str, ...] = ()) -> SubmissionFiles:
    """What of ``folder`` is graded, decided on ``lstat`` alone (nothing is read, no link followed).

    ``limits=None``: no size cap (the instructor's own folders: ``source/``, ``release/``, results).
    ``first``: the relative paths that matter most, taken in that order before any other file (nbgrader's
    ``timestamp.txt``, which late penalties read, and the assignment's notebooks), so that padding a
    submission with files can push out neither. Then the other notebooks at the top, then the rest by name.
    A ``folder`` that is missing, a link or not a folder lists nothing.
    """
    outcome = SubmissionFiles(limits=limits)
    if os.path.islink(folder) or not os.path.isdir(folder):
        return outcome
    found: list[tuple[str, os.stat_result]] = []
    pinned = set()
    for path in dict.fromkeys(p for p in first if "/" not in p):  # found even when the walk stops early
        try:
            st = os.lstat(os.path.join(folder, path))
            if not stat.S_ISDIR(st.st_mode):  # a folder so named is the walk's (the row names it)
                found.append((path, st))
                pinned.add(path)
        except FileNotFoundError:
            pass
        except OSError as why:
            outcome.unreadable.append((path, why.strerror or str(why)))
            pinned.add(path)
    _walk(os.fspath(folder), found, outcome, limits.max_entries if limits is not None else None, pinned)
    rank = {path: i for i, path in enumerate(first)}
    found.sort(key=lambda item: (rank.get(item[0], len(rank) + ("/" in item[0] or not item[0].endswith(".ipynb"))), item[0]))
    total = 0
    for path, st in found:
        if stat.S_ISLNK(st.st_mode):
            outcome.left_out.append((path, LINK, LINK))
        elif not stat.S_ISREG(st.st_mode):
            outcome.left_out.append((path, SPECIAL, SPECIAL))
        elif limits is not None and st.st_size > limits.max_file_bytes:
            outcome.left_out.append((path, TOO_LARGE, format_size(st.st_size)))
        elif limits is not None and (total + st.st_size > limits.max_submission_bytes
                                     or len(outcome.taken) >= limits.max_files):
            outcome.left_out.append((path, OVER_TOTAL, format_size(st.st_size)))
        else:
            outcome.taken.append((path, st.st_size))
            total += st.st_size
    outcome.left_out.sort()
    if limits is not None:
        del outcome.folders[limits.max_files:]
    return outcome


def _open_regular(path: Path):
    """A binary file object for ``path`` if it is a regular file; never follows a final link, never blocks."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        raise OSError(f"{path} is not a regular file")
    return f


def _chunks(f, limit: int | None, path: Path):
    read = 0
    while chunk := f.read(_CHUNK):
        read += len(chunk)
        if limit is not None and read > limit:
            raise FileTooLarge(f"{Path(path).name} grew past {format_size(limit)} while it was read")
        yield chunk


def read_file(path: Path, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    Raises:
        OSError: it cannot be read, or is a link or special file now; FileTooLarge past ``limit``.
    """
    with _open_regular(path) as f:
        return b"".join(_chunks(f, limit, path))


class WriteFailed(OSError):
    """Writing the copy failed (the grading machine's disk, not the student's file): ``strerror`` says why."""


def copy_file(source: Path, target: Path, limit: int | None = None) -> None:
    """Copy the regular file ``source`` to ``target`` in chunks, at most ``limit`` bytes, with its permission
    bits (owner read and write added: the copy is rewritten) and modification time, as ``shutil.copy2`` would.

    Raises:
        OSError: reading ``source`` failed (as :func:`read_file`); WriteFailed: writing ``target`` failed.
    """
    with _open_regular(source) as f:
        st = os.fstat(f.fileno())
        try:
            out = open(target, "wb")
        except OSError as why:
            raise WriteFailed(why.errno, why.strerror) from why
        with out:
            for chunk in _chunks(f, limit, source):
                try:
                    out.write(chunk)
                except OSError as why:
                    raise WriteFailed(why.errno, why.strerror) from why
            try:
                out.flush()
                os.chmod(out.fileno(), stat.S_IMODE(st.st_mode) | 0o600)
                os.utime(out.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
            except OSError as why:
                raise WriteFailed(why.errno, why.strerror) from why


def file_digest(path: Path, limit: int | None = None) -> bytes:
    """SHA-256 of the regular file ``path``, read in chunks (errors as :func:`read_file`)."""
    h = hashlib.sha256()
    with _open_regular(path) as f:
        for chunk in _chunks(f, limit, path):
            h.update(chunk)
    return h.digest()
