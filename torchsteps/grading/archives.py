"""Feedback for students without nbgrader's exchange: one zip per student.

nbgrader hands feedback back through its exchange (``nbgrader release_feedback``), which needs a shared
file system with the students. A course that collects through an LMS hands feedback back through it
too: ``feedback_zips/<assignment>/<student_id>.zip`` holds the student's feedback
(``<assignment>/<notebook>.html``, what ``nbgrader generate_feedback`` wrote to
``feedback/<student_id>/<assignment>/``), ready to attach to that student in the LMS. Only the feedback
folder is read, so the hidden tests stay out as they do in feedback (``HideHiddenTests``). The archives
are byte-identical from one run to the next (fixed timestamps, sorted entries).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

__all__ = ["ARCHIVE_DIR", "write_feedback_archives"]

ARCHIVE_DIR = "feedback_zips"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold


def _up_to_date(archive: Path, folder: Path) -> bool:
    """Whether ``archive`` was written after the last change to ``folder`` (its files, or which files it holds)."""
    try:
        written = archive.stat().st_mtime_ns
        changed = max([folder.stat().st_mtime_ns] + [p.stat().st_mtime_ns for p in folder.rglob("*")])
    except OSError:
        return False
    return written > changed


def write_feedback_archives(coursedir, assignment_id: str) -> list[Path]:
    """Write one zip per student with feedback for ``assignment_id``; returns their paths, by student.

    Archives of students who no longer have feedback for the assignment are removed; an archive newer than
    everything in its student's feedback folder is kept as it is.
    """
    root = Path(coursedir.root)
    feedback = root / coursedir.feedback_directory
    out = root / ARCHIVE_DIR / assignment_id
    out.mkdir(parents=True, exist_ok=True)
    written = []
    students = sorted(p.name for p in feedback.iterdir() if (p / assignment_id).is_dir()) if feedback.is_dir() else []
    for student_id in students:
        folder = feedback / student_id / assignment_id
        path = out / f"{student_id}.zip"
        written.append(path)
        if _up_to_date(path, folder):
            continue  # the same bytes would be written again (a re-run that graded nothing new)
        tmp = path.with_suffix(".zip.tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                info = zipfile.ZipInfo(f"{assignment_id}/{file.relative_to(folder).as_posix()}", _EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, file.read_bytes())
        tmp.replace(path)
    for stale in set(out.glob("*.zip")) - set(written):
        stale.unlink()
    return written
