"""A readable working copy of one submission, made before nbgrader sees it.

nbgrader reads ``submitted/`` directly and stops on things students do all the time. Grading reads a
staged copy instead (``.grading/staging/submitted/<student>/<assignment>``), so the student's files are
never touched, and the copy is normalised where the intent is clear:

- a notebook saved with bytes that are not UTF-8: the bad bytes become U+FFFD;
- a notebook of an older nbformat 4.x minor (no cell ids): upgraded to 4.5 with new ids;
- a renamed notebook (``02_creating_tensors (1).ipynb``, ``Copy of ...``): staged under the expected
  name when its graded cells identify exactly one missing notebook of the assignment.

Each change is reported as a note on the student's row. What cannot be read at all (empty file,
invalid JSON) raises :class:`UnreadableSubmission` with a plain reason.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nbformat.v4.nbbase import random_cell_id

__all__ = ["STAGING_DIR", "UnreadableSubmission", "stage_submission"]

STAGING_DIR = ".grading/staging/submitted"


class UnreadableSubmission(ValueError):
    """A submission no normalisation can make gradable; the message is the reason for the student's row."""


def _grade_ids(nb: dict) -> frozenset[str]:
    return frozenset(
        c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        for c in nb.get("cells", [])
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    )


def _read(path: Path, notes: list[str]) -> dict:
    data = path.read_bytes()
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
    if not isinstance(nb, dict) or "cells" not in nb:
        raise UnreadableSubmission(f"{path.name} is JSON but not a notebook (no cells)")
    return nb


def _upgrade(nb: dict, name: str, notes: list[str]) -> dict:
    major, minor = nb.get("nbformat"), nb.get("nbformat_minor", 0)
    if major == 4 and minor < 5:
        for cell in nb["cells"]:
            cell.setdefault("id", random_cell_id())
        nb["nbformat_minor"] = 5
        notes.append(f"{name}: upgraded from nbformat 4.{minor} to 4.5")
    return nb


def stage_submission(submitted: Path, staged: Path, expected: dict[str, frozenset[str]]) -> list[str]:
    """Copy ``submitted`` to ``staged`` (replacing it), normalising notebooks; returns the notes.

    ``expected`` maps each notebook name of the assignment (without ``.ipynb``) to the grade_ids of its
    source version, to recognise renamed notebooks.

    Raises:
        UnreadableSubmission: for a notebook that cannot be read as one (the reason names the file).
    """
    if staged.exists():
        shutil.rmtree(staged)
    shutil.copytree(submitted, staged, symlinks=False, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    notes: list[str] = []
    notebooks = {}
    for path in sorted(staged.glob("*.ipynb")):
        nb = _upgrade(_read(path, notes), path.name, notes)
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
    return notes
