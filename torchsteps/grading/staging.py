"""A readable working copy of one submission, made before nbgrader sees it.

nbgrader reads ``submitted/`` directly and stops on things students do all the time. Grading reads a
staged copy instead (``.grading/staging/submitted/<student>/<assignment>``), so the student's files are
never touched, and the copy is normalised where the intent is clear:

- a notebook saved with bytes that are not UTF-8: the bad bytes become U+FFFD;
- a notebook of an older nbformat 4.x minor (no cell ids): upgraded to 4.5 with new ids;
- a renamed notebook (``02_creating_tensors (1).ipynb``, ``Copy of ...``): staged under the expected
  name when its graded cells identify exactly one missing notebook of the assignment;
- real-world notebooks (issue 12, :func:`_repair_cells` and :func:`_recognise_cells`): nbgrader cell
  metadata of an older schema (last year's release) is upgraded with nbgrader's own validator; a cell
  whose ``id`` is null gets a new id; a cell pasted from another notebook, carrying nbgrader metadata
  with a grade_id this notebook does not have, becomes an ordinary cell; a notebook saved without any
  nbgrader metadata (Colab drops it) gets it back from the release, cell by cell, recognised by content
  and position, or a plain reason when its cells cannot be recognised.

Only the files :mod:`torchsteps.grading.submission_files` takes are copied: regular files, no link followed, no
special file opened, within the size caps of :class:`SubmissionLimits`. Each file left out is named in a
note; the Dask path sends the same files with the same notes.

Each change is reported as a note on the student's row. What cannot be read at all (empty file,
invalid JSON, a file the grading user may not read) raises :class:`UnreadableSubmission` with a plain reason.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import unicodedata
from pathlib import Path

import nbformat
from nbformat.v4.nbbase import random_cell_id

from .submission_files import OVER_TOTAL, TOO_LARGE, SubmissionFiles, SubmissionLimits, WriteFailed, copy_file, list_submission

__all__ = ["STAGING_DIR", "TIMESTAMP_FILE", "UnreadableSubmission", "gradable_files", "taken_first", "stage_submission", "submission_folder", "folder_problem"]

STAGING_DIR = ".grading/staging/submitted"
# nbgrader reads a submission's time from this file (hard-coded in nbgrader 0.9: CourseDirectory.get_existing_timestamp,
# ZipCollectApp); late penalties depend on it.
TIMESTAMP_FILE = "timestamp.txt"


class UnreadableSubmission(ValueError):
    """A submission no normalisation can make gradable; the message is the reason for the student's row."""


def submission_folder(submitted: Path, student_id: str) -> Path:
    """``submitted/<student_id>``, or the folder whose name is another Unicode normal form of the same id.
    Never raises: what cannot be read is left to :func:`folder_problem` to name."""
    exact = submitted / student_id
    try:
        if exact.is_dir() or not submitted.is_dir():
            return exact
        for p in submitted.iterdir():
            if p.is_dir() and unicodedata.normalize("NFC", p.name) == unicodedata.normalize("NFC", student_id):
                return p
    except OSError:
        pass
    return exact


def folder_problem(student_folder: Path, assignment_id: str) -> str | None:
    """Why ``student_folder`` (``submitted/<student>``) or its assignment folder cannot be graded, or None: one
    of them is a link (to ``source/<assignment>``, another student's folder...), or the grading user may not
    look into it (a folder copied with ``cp -a`` from a hub keeps a student's ``chmod 000``; ``Path.is_dir``
    then raises ``PermissionError``, which stopped the class). A folder that does not exist is no problem."""
    for folder in (student_folder, student_folder / assignment_id):
        where = f"{folder.parent.name}/{folder.name}" if folder != student_folder else folder.name
        try:
            mode = os.lstat(folder).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as why:
            return f"submitted/{where} cannot be read by the grading user: {why.strerror or why}"
        if stat.S_ISLNK(mode):
            return (f"submitted/{where} is a link, not a folder: only a student's own files are graded; "
                    "put the files themselves there")
    return None


def _grade_ids(nb: dict) -> frozenset[str]:
    return frozenset(
        c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        for c in nb.get("cells", [])
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    )


def _read(path: Path, notes: list[str]) -> dict:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise UnreadableSubmission(f"{path.name} is a folder, not a notebook") from None
    except OSError as why:
        raise UnreadableSubmission(f"{path.name} cannot be read: {why.strerror or why}") from None
    if not data.strip():
        raise UnreadableSubmission(f"{path.name} is an empty file, not a notebook")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        notes.append(f"{path.name}: bytes that are not UTF-8 were replaced")
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as e:
        raise UnreadableSubmission(f"{path.name} is not valid notebook JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:  # "[[[[...": nested deeper than Python's recursion limit
        raise UnreadableSubmission(f"{path.name} is JSON nested too deeply to be a notebook") from None
    if not isinstance(nb, dict) or "cells" not in nb:
        raise UnreadableSubmission(f"{path.name} is JSON but not a notebook (no cells)")
    # The shapes the steps below rely on (nbformat's schema checks the rest later, per student).
    if not isinstance(nb["cells"], list) or not all(isinstance(c, dict) for c in nb["cells"]):
        raise UnreadableSubmission(f"{path.name} is JSON but not a notebook (its cells are not a list of cells)")
    if not all(isinstance(nb.get(k, 0), int) for k in ("nbformat", "nbformat_minor")):
        raise UnreadableSubmission(f"{path.name} is JSON but not a notebook (nbformat is not a number)")
    return nb


def _upgrade(nb: dict, name: str, notes: list[str]) -> dict:
    major, minor = nb.get("nbformat"), nb.get("nbformat_minor", 0)
    if major == 4 and minor < 5:
        for cell in nb["cells"]:
            cell.setdefault("id", random_cell_id())
        nb["nbformat_minor"] = 5
        notes.append(f"{name}: upgraded from nbformat 4.{minor} to 4.5")
    return nb


def taken_first(expected=(), timestamp_file: str = TIMESTAMP_FILE) -> tuple[str, ...]:
    """The files of a submission that the caps never push out: nbgrader's timestamp (late penalties), then the
    ``expected`` notebooks (names without ``.ipynb``), in that order."""
    return (timestamp_file, *(f"{name}.ipynb" for name in expected))


def gradable_files(submitted: Path, limits: SubmissionLimits, expected=(), timestamp_file: str = TIMESTAMP_FILE) -> SubmissionFiles:
    """The files of ``submitted`` that are graded (:func:`~torchsteps.grading.submission_files.list_submission`),
    for staging here and for a Dask task (:func:`torchsteps.grading.cluster.grade_on_cluster`). nbgrader's
    ``timestamp_file`` (late penalties) and the ``expected`` notebooks (names without ``.ipynb``) come first.

    Raises:
        UnreadableSubmission: a file or folder of the submission cannot be read (the grading user may not), or a
            file grading needs is over the caps: the timestamp or an expected notebook. No grade could be right
            without it. Any other notebook over a cap (even one that may be a missing notebook renamed) is only
            named in the notes: the notebooks that are there are still graded, the missing one scores 0.
    """
    needed = taken_first(expected, timestamp_file)
    listing = list_submission(submitted, limits, first=needed)
    if listing.unreadable:
        names = ", ".join(path for path, _why in listing.unreadable)
        raise UnreadableSubmission(f"could not read {names} from the submission: {listing.unreadable[0][1]}")
    for path, why, size in listing.left_out:
        if why in (TOO_LARGE, OVER_TOTAL) and path in needed:
            limit = (f"larger than {limits.max_file_mb} MiB (c.SubmissionLimits.max_file_mb)" if why == TOO_LARGE else
                     f"past the {limits.max_submission_mb} MiB or {limits.max_files} files a submission may hold "
                     "(c.SubmissionLimits.max_submission_mb, max_files)")
            what = "the timestamp" if path == timestamp_file else "a notebook"
            raise UnreadableSubmission(f"{path} is {size}: {what} {limit} is not graded")
    return listing


def stage_submission(submitted: Path, staged: Path, expected: dict[str, frozenset[str]],
                     release: dict[str, dict] | None = None, limits: SubmissionLimits | None = None,
                     timestamp_file: str = TIMESTAMP_FILE) -> list[str]:
    """Copy ``submitted`` to ``staged`` (replacing it), normalising notebooks; returns the notes.

    ``expected`` maps each notebook name of the assignment (without ``.ipynb``) to the grade_ids of its
    source version, to recognise renamed notebooks. ``release`` (optional) maps the same names to the
    released notebooks (JSON), to give back nbgrader metadata to a notebook saved without it. ``limits``:
    the size caps (the defaults of :class:`SubmissionLimits` when None); what is left out is named in the
    notes. ``timestamp_file``: nbgrader's timestamp of the submission, never pushed out by the caps.

    Raises:
        UnreadableSubmission: for a notebook that cannot be read as one, or a file that cannot be read or
            copied (the reason names the file); its ``notes`` are the notes made until then.
    """
    notes: list[str] = []
    try:
        return _stage(submitted, staged, expected, release, limits or SubmissionLimits(), timestamp_file, notes)
    except UnreadableSubmission as why:
        why.notes = notes
        raise


def _copy(submitted: Path, staged: Path, listing: SubmissionFiles, limit: int) -> None:
    where = "."
    try:
        staged.mkdir(parents=True)
        for where in listing.folders:
            (staged / where).mkdir(parents=True, exist_ok=True)
        for where, _size in listing.taken:
            (staged / where).parent.mkdir(parents=True, exist_ok=True)
            copy_file(submitted / where, staged / where, limit)
    except WriteFailed as why:
        raise UnreadableSubmission(f"could not write the copy of {where} on the grading machine: {why.strerror or why}") from None
    except OSError as why:
        if why.filename is not None and Path(os.fsdecode(why.filename)).is_relative_to(staged):
            raise UnreadableSubmission(f"could not write the copy of {where} on the grading machine: {why.strerror or why}") from None
        # changed since it was listed, or the grading user may not read it
        raise UnreadableSubmission(f"could not read {where} from the submission: {why.strerror or why}") from None


def _stage(submitted, staged, expected, release, limits: SubmissionLimits, timestamp_file: str, notes: list[str]) -> list[str]:
    if staged.exists():
        shutil.rmtree(staged)
    listing = gradable_files(submitted, limits, expected, timestamp_file)
    _copy(submitted, staged, listing, limits.max_file_bytes)
    notes += listing.notes()
    notebooks = {}
    for path in sorted(staged.glob("*.ipynb")):
        nb = _repair_cells(_upgrade(_read(path, notes), path.name, notes), path.name, notes)
        notebooks[path.stem] = nb
        path.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    missing = [name for name in expected if name not in notebooks]
    for stem, nb in notebooks.items():
        if stem in expected or not missing:
            continue
        ids = _grade_ids(nb)
        # More than half of a missing notebook's cells: the same notebook under another name.
        matches = [name for name in missing if len(ids & expected[name]) * 2 > len(expected[name])]
        if len(matches) == 1:
            (staged / f"{stem}.ipynb").rename(staged / f"{matches[0]}.ipynb")
            notes.append(f"renamed notebook '{stem}.ipynb' graded as '{matches[0]}.ipynb'")
            missing.remove(matches[0])
    for name in expected:
        path = staged / f"{name}.ipynb"
        if path.is_file():
            nb = json.loads(path.read_text(encoding="utf-8"))
            if _recognise_cells(nb, name, expected[name], (release or {}).get(name), notes):
                path.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    return notes


# --- real-world notebooks (issue 12) ------------------------------------------------------------------


def _nbgrader_meta(cell: dict) -> dict:
    meta = cell.get("metadata")
    return meta.get("nbgrader") if isinstance(meta, dict) and isinstance(meta.get("nbgrader"), dict) else {}


def _repair_cells(nb: dict, name: str, notes: list[str]) -> dict:
    """Null cell ids and nbgrader metadata of an older schema, repaired in place; returns ``nb``.

    nbformat 4.5 requires a string id on every cell; nbgrader 0.9 reads only schema version 3 and upgrades
    older cell metadata with :class:`nbgrader.nbgraderformat.MetadataValidator` (``nbgrader update``).
    """
    from nbgrader.nbgraderformat import SCHEMA_VERSION, MetadataValidator

    null_ids = 0
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5):
        for cell in nb["cells"]:
            if not isinstance(cell.get("id"), str) or not cell["id"]:
                cell["id"] = random_cell_id()
                null_ids += 1
    if null_ids:
        notes.append(f"{name}: {null_ids} cell(s) without an id (\"id\": null) got a new one")
    # only metadata that says it is older (a release from an older nbgrader); none at all is left to nbgrader
    old = [c for c in nb["cells"] if isinstance(_nbgrader_meta(c).get("schema_version"), int)
           and _nbgrader_meta(c)["schema_version"] < SCHEMA_VERSION]
    if old:
        validator = MetadataValidator()
        versions = sorted({_nbgrader_meta(c)["schema_version"] for c in old})
        for i, cell in enumerate(nb["cells"]):
            if cell in old:
                nb["cells"][i] = json.loads(json.dumps(validator.upgrade_cell_metadata(nbformat.from_dict(cell))))
        notes.append(f"{name}: nbgrader metadata of schema version {', '.join(map(str, versions))} upgraded to {SCHEMA_VERSION}")
    return nb


def _recognise_cells(nb: dict, name: str, expected: frozenset[str], release: dict | None, notes: list[str]) -> bool:
    """Pasted cells with a foreign grade_id made ordinary, and a notebook without nbgrader metadata given it
    back from ``release``; returns whether ``nb`` changed.

    Raises:
        UnreadableSubmission: when no cell carries nbgrader metadata and the release's cells cannot be
            recognised by content (the reason names the cause).
    """
    changed = False
    foreign = [c for c in nb["cells"] if _nbgrader_meta(c).get("grade_id") and _nbgrader_meta(c)["grade_id"] not in expected]
    if foreign:
        ids = ", ".join(sorted({str(_nbgrader_meta(c)["grade_id"]) for c in foreign}))
        for cell in foreign:
            del cell["metadata"]["nbgrader"]
        notes.append(f"{name}.ipynb: {len(foreign)} cell(s) with nbgrader metadata from another notebook "
                     f"(grade_id {ids}) graded as ordinary cells")
        changed = True
    if release is None or any(_nbgrader_meta(c).get("grade_id") in expected for c in nb["cells"]):
        return changed
    restored = _restore_from_release(nb["cells"], release["cells"])
    graded = [c for c in release["cells"] if _nbgrader_meta(c).get("grade_id")]
    tests = {(_nbgrader_meta(c)["grade_id"]) for c in graded if _nbgrader_meta(c).get("grade")}
    if not restored or not (tests & {_nbgrader_meta(c)["grade_id"] for c in restored}):
        raise UnreadableSubmission(
            f"{name}.ipynb has no nbgrader cell metadata (saved by Colab or another editor that drops it), "
            "and its cells could not be matched to the released notebook; submit the notebook downloaded "
            "as .ipynb from the released copy"
        )
    notes.append(f"{name}.ipynb was saved without nbgrader cell metadata (Colab?): recognised "
                 f"{len(restored)} of {len(graded)} graded cells by their content and position")
    return True


def _restore_from_release(cells: list[dict], release_cells: list[dict]) -> list[dict]:
    """Copy the release's nbgrader metadata onto the matching student cells (in order); returns those cells.

    A locked cell (setup, tests) matches the next student cell with the same source; an answer cell is, among
    the cells before the match of the locked cell that follows it in the release, the last one that still
    holds the released cell's first line (``def name(...):``), else the last cell of its type.
    """
    def same(a, b):
        return "".join(a.get("source", "")).strip() == "".join(b.get("source", "")).strip()

    restored = []
    position = 0
    graded = [c for c in release_cells if _nbgrader_meta(c).get("grade_id")]
    for k, wanted in enumerate(graded):
        meta = _nbgrader_meta(wanted)
        if meta.get("solution") and not meta.get("locked"):
            follower = next((c for c in graded[k + 1:] if _nbgrader_meta(c).get("locked")), None)
            end = next((j for j in range(position, len(cells)) if follower and same(cells[j], follower)), len(cells))
            candidates = [j for j in range(position, end) if cells[j].get("cell_type") == wanted.get("cell_type")]
            if not candidates:
                continue
            # the cell that still starts like the released one (``def name(...):``), else the last code cell
            head = next((line.strip() for line in "".join(wanted.get("source", "")).splitlines() if line.strip()), "")
            like = [j for j in candidates if head and head in "".join(cells[j].get("source", ""))]
            j = (like or candidates)[-1]
        else:
            j = next((j for j in range(position, len(cells)) if same(cells[j], wanted)), None)
            if j is None:
                continue
        cells[j].setdefault("metadata", {})["nbgrader"] = json.loads(json.dumps(meta))
        for key in ("deletable", "editable"):
            if key in wanted.get("metadata", {}):
                cells[j]["metadata"][key] = wanted["metadata"][key]
        restored.append(cells[j])
        position = j + 1
    return restored
