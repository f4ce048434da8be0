"""Which files of a submission are graded: one walk shared by staging, the incremental digest and the Dask client.

A submission folder is the student's to fill, so what it holds is untrusted:

- only regular files are taken. Links are never followed (a link could bring an instructor's file, a
  source notebook with its solutions, into the graded copy and the student's feedback) and special files
  (FIFOs, devices, sockets) are never opened (``/dev/zero`` never ends; a FIFO blocks a reader);
- sizes are capped (:class:`SubmissionLimits`): a file larger than ``max_file_mb`` is left out, and so is
  every file past ``max_submission_mb`` or ``max_files`` in all. Notebooks at the top of the folder come
  first, so the graded notebooks are the last thing to be left out. Only ``lstat`` is read before deciding,
  so an 8 GiB sparse file costs nothing, and reading never goes past the cap, even for a file that grew;
- ``.ipynb_checkpoints`` and ``__pycache__`` are editor and interpreter leftovers, never graded.

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

__all__ = ["SKIPPED_FOLDERS", "LINK", "SPECIAL", "TOO_LARGE", "OVER_TOTAL", "SubmissionLimits", "SubmissionFiles", "FileTooLarge", "list_submission",
           "read_file", "copy_file", "file_digest", "format_size"]

SKIPPED_FOLDERS = frozenset({".ipynb_checkpoints", "__pycache__"})
_MIB = 1024 * 1024
_CHUNK = _MIB
# The reasons a file is left out, as the notes name them.
LINK, SPECIAL, TOO_LARGE, OVER_TOTAL = "a link", "not a regular file", "too large", "over the submission's limits"


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
    folders: list[str] = field(default_factory=list)  # every folder walked, empty ones too (a copy keeps them)
    left_out: list[tuple[str, str, str]] = field(default_factory=list)  # (path, reason, detail)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, error) of what could not be listed
    limits: SubmissionLimits | None = None  # the caps it was listed under (None: none)

    def notes(self, shown: int = 10) -> list[str]:
        """One note per kind of reason, naming up to ``shown`` files each (10,000 files make one short line)."""
        headings = {LINK: "left out, not followed", SPECIAL: "left out, not followed"}
        if self.limits is not None:
            headings[TOO_LARGE] = f"left out, larger than {self.limits.max_file_mb} MiB"
            headings[OVER_TOTAL] = (f"left out, past the {self.limits.max_submission_mb} MiB or "
                                    f"{self.limits.max_files} files a submission may hold")
        groups: dict[str, list[str]] = {}
        for path, why, detail in self.left_out:
            groups.setdefault(headings[why], []).append(f"{path} ({detail})")
        notes = []
        for heading in dict.fromkeys(headings.values()):
            names = groups.get(heading, [])
            if names:
                more = f" and {len(names) - shown} more" if len(names) > shown else ""
                notes.append(f"{heading}: {', '.join(names[:shown])}{more}")
        return notes


def _walk(folder: str, relative: str, found: list, outcome: SubmissionFiles) -> None:
    try:
        with os.scandir(folder) as entries:
            entries = sorted(entries, key=lambda e: e.name)
    except OSError as why:
        outcome.unreadable.append((relative or ".", why.strerror or str(why)))
        return
    for entry in entries:
        path = f"{relative}/{entry.name}" if relative else entry.name
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as why:
            outcome.unreadable.append((path, why.strerror or str(why)))
            continue
        if stat.S_ISDIR(st.st_mode):
            if entry.name not in SKIPPED_FOLDERS:
                outcome.folders.append(path)
                _walk(entry.path, path, found, outcome)
        else:
            found.append((path, st))


def list_submission(folder: Path, limits: SubmissionLimits | None = None) -> SubmissionFiles:
    """What of ``folder`` is graded, decided on ``lstat`` alone (nothing is read, no link followed).

    ``limits=None``: no size cap (the instructor's own folders: ``source/``, ``release/``, results).
    A ``folder`` that is missing, a link or not a folder lists nothing.
    """
    outcome = SubmissionFiles(limits=limits)
    if os.path.islink(folder) or not os.path.isdir(folder):
        return outcome
    found: list[tuple[str, os.stat_result]] = []
    _walk(os.fspath(folder), "", found, outcome)
    # Notebooks at the top first: under the caps, the graded notebooks are the last thing left out.
    found.sort(key=lambda item: ("/" in item[0] or not item[0].endswith(".ipynb"), item[0]))
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


def copy_file(source: Path, target: Path, limit: int | None = None) -> None:
    """Copy the regular file ``source`` to ``target`` in chunks, at most ``limit`` bytes (errors as :func:`read_file`)."""
    with _open_regular(source) as f, open(target, "wb") as out:
        for chunk in _chunks(f, limit, source):
            out.write(chunk)


def file_digest(path: Path, limit: int | None = None) -> bytes:
    """SHA-256 of the regular file ``path``, read in chunks (errors as :func:`read_file`)."""
    h = hashlib.sha256()
    with _open_regular(path) as f:
        for chunk in _chunks(f, limit, path):
            h.update(chunk)
    return h.digest()
