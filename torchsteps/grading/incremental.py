"""Incremental regrading: which submissions changed since they were last graded.

A submission is graded again only when its *digest* changed: a SHA-256 over the files of
``submitted/<student>/<assignment>/`` (names and bytes), the instructor's ``source/<assignment>/``
(the tests) and ``nbgrader_config.py`` (limits, preprocessors). The digest of each graded submission is
kept in ``.grading/digests/<assignment>.json`` with the id of its submission in the gradebook, so a
new or reset gradebook (another id, or none) also grades everything again. Submissions that could not
be graded are always tried again (they cost no kernel, and the cause may have been fixed).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from .staging import submission_folder, taken_first
from .submission_files import SubmissionLimits, file_digest, list_submission

__all__ = ["DIGEST_DIR", "submission_digest", "DigestStore"]

DIGEST_DIR = ".grading/digests"
CONFIG_FILE = "nbgrader_config.py"


def _hash_tree(h, folder: Path, label: str, limits: SubmissionLimits | None = None, first: tuple[str, ...] = ()) -> None:
    """Names and bytes of the files of ``folder`` that grading takes, as staging copies them
    (:func:`~torchsteps.grading.submission_files.list_submission`: no link followed, no special file or file
    over the caps read). What is left out counts by its name and reason, and what cannot be read counts by
    its error, so grading goes on to give that student the reason (and a fixed permission changes the digest)."""
    h.update(f"\0{label}\0".encode())
    try:
        if folder.is_symlink() or not folder.is_dir():
            h.update(b"link" if folder.is_symlink() else b"")
            return
    except OSError as why:  # the grading user may not look into it: grading gives the reason
        h.update(f"unreadable {why.errno}".encode())
        return
    listing = list_submission(folder, limits, first)
    entries = [(path, f"unreadable {why}".encode()) for path, why in listing.unreadable]
    entries += [(path, f"left out: {why} ({detail})".encode()) for path, why, detail in listing.left_out]
    for path, _size in listing.taken:
        try:
            digest = file_digest(folder / path, limits.max_file_bytes if limits else None)
        except OSError as why:
            digest = f"unreadable {why.errno}".encode()
        entries.append((path, digest))
    for relative, digest in sorted(entries):
        h.update(relative.encode("utf-8", "surrogateescape") + b"\0")
        h.update(digest)


def submission_digest(coursedir, assignment_id: str, student_id: str, limits: SubmissionLimits | None = None,
                      expected=()) -> str:
    """The SHA-256 (hex) of a submission's files, the assignment's source and the course config.

    ``limits``: the caps grading applies (the course's ``c.SubmissionLimits``; its defaults when None), and
    ``expected`` the assignment's notebook names, so that the files are taken as staging takes them
    (:func:`torchsteps.grading.staging.gradable_files`: ``timestamp.txt`` and those notebooks first) and
    a file grading leaves out is not read here either."""
    root = Path(coursedir.root)
    h = hashlib.sha256()
    limits = limits if limits is not None else SubmissionLimits()
    _hash_tree(h, submission_folder(root / coursedir.submitted_directory, student_id) / assignment_id, "submitted", limits,
               taken_first(expected))
    _hash_tree(h, root / coursedir.source_directory / assignment_id, "source")
    config = root / CONFIG_FILE
    h.update(b"\0config\0" + (config.read_bytes() if config.is_file() else b""))
    return h.hexdigest()


class DigestStore:
    """The digests of the graded submissions of one assignment, with their last results."""

    def __init__(self, coursedir, assignment_id: str):
        self.coursedir = coursedir
        self.assignment_id = assignment_id
        self.path = Path(coursedir.root) / DIGEST_DIR / f"{assignment_id}.json"
        try:
            self.entries = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.entries = {}

    def _submission_id(self, student_id: str) -> str | None:
        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            try:
                return gb.find_submission(self.assignment_id, student_id).id
            except MissingEntry:
                return None

    def _submission_ids_before(self) -> dict[str, str]:
        """Every student's submission id as the run starts, read once (one gradebook query, not one per student)."""
        if getattr(self, "_before", None) is None:
            with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
                try:
                    self._before = {s.student_id: s.id for s in gb.find_assignment(self.assignment_id).submissions}
                except MissingEntry:
                    self._before = {}
        return self._before

    def unchanged(self, student_id: str, digest: str, feedback: bool) -> dict | None:
        """The stored result (a dict of :class:`~torchsteps.results.status.SubmissionResult`) when this submission
        was graded with this digest into the current gradebook and its outputs are still there; else None."""
        entry = self.entries.get(student_id)
        if not entry or entry.get("digest") != digest or entry["result"].get("status") != "graded":
            return None
        root = Path(self.coursedir.root)
        outputs = [root / self.coursedir.autograded_directory / student_id / self.assignment_id]
        if feedback:
            outputs.append(root / self.coursedir.feedback_directory / student_id / self.assignment_id)
        if not all(p.is_dir() for p in outputs) or entry.get("feedback", False) < feedback:
            return None
        if entry.get("submission_id") != self._submission_ids_before().get(student_id):
            return None
        return entry["result"]

    def record(self, result, digest: str, feedback: bool) -> None:
        """Remember a graded submission (other outcomes are forgotten: they are graded again next time)."""
        if result.status != "graded":
            self.entries.pop(result.student_id, None)
            return
        self.entries[result.student_id] = {
            "digest": digest, "submission_id": self._submission_id(result.student_id),
            "feedback": feedback, "result": asdict(result),
        }

    def save(self) -> None:
        """Write the digests; atomically (a run stopped in the middle leaves the old file or the new one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(self.entries, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(partial, self.path)
