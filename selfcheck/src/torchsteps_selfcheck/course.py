"""The course as a student sees it: its notebooks, their exercises, the test cell of each, its points.

Read from the release notebooks themselves (nbgrader metadata: ``grade``, ``solution``, ``grade_id``,
``points``; the markdown heading above each test cell), never from the instructor's sources. The
release step writes the result as ``course.json`` into this package before building the wheel, so the
installed plugin knows the course without any other file.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat

__all__ = ["Exercise", "Course", "read_release", "load_packaged", "is_test_cell", "headings", "COURSE_FILE"]

COURSE_FILE = Path(__file__).with_name("course.json")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_POINTS_SUFFIX = re.compile(r"\s*\(\s*\d+(?:\.\d+)?\s+points?\s*\)\s*$")


@dataclass(frozen=True)
class Exercise:
    """One test cell of a release notebook: its grade_id, its points, and the heading above it.

    ``title`` is the heading as rendered (``Exercise 3: an independent copy``; backticks and a
    trailing "(2 points)" removed), ``number`` its first part (``Exercise 3``).
    """

    grade_id: str
    points: float
    title: str

    @property
    def number(self) -> str:
        return self.title.split(":", 1)[0].strip()


@dataclass(frozen=True)
class Course:
    """``{notebook file stem: [Exercise, ...]}`` in notebook order."""

    assignment: str
    notebooks: dict

    def owner(self, grade_ids) -> str | None:
        """The notebook whose test cells overlap ``grade_ids`` most, or None when none does."""
        ids = set(grade_ids)
        overlap = {name: len(ids & {e.grade_id for e in exercises}) for name, exercises in self.notebooks.items()}
        best = max(overlap, key=overlap.get, default=None)
        return best if best is not None and overlap[best] else None

    def to_json(self) -> str:
        data = {"assignment": self.assignment,
                "notebooks": {name: [asdict(e) for e in exercises] for name, exercises in self.notebooks.items()}}
        return json.dumps(data, indent=1, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Course":
        data = json.loads(text)
        return cls(data["assignment"], {name: [Exercise(**e) for e in exercises] for name, exercises in data["notebooks"].items()})


def is_test_cell(cell) -> bool:
    """An nbgrader test cell (*Autograder tests*): a code cell with ``grade=True, solution=False``."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def headings(cell) -> list[str]:
    """The markdown headings of a cell, as rendered text (``#`` and backticks removed)."""
    if cell.get("cell_type") != "markdown":
        return []
    found = []
    for line in cell.get("source", "").splitlines():
        match = _HEADING.match(line)
        if match and match.group(1):
            found.append(match.group(1).replace("`", ""))
    return found


def exercises_of(nb) -> list[Exercise]:
    """The test cells of one notebook, each with the last heading above it."""
    exercises, heading = [], ""
    for index, cell in enumerate(nb.cells):
        found = headings(cell)
        if found:
            heading = found[-1]
        if is_test_cell(cell):
            meta = cell.metadata.nbgrader
            title = _POINTS_SUFFIX.sub("", heading) or f"test cell {meta.get('grade_id') or index + 1}"
            exercises.append(Exercise(str(meta.get("grade_id", "")), float(meta.get("points", 0)), title))
    return exercises


def read_release(folder: str | Path) -> Course:
    """The course of the release notebooks in ``folder`` (``release/<assignment>/``).

    Raises:
        ValueError: if no notebook of ``folder`` has a test cell.
    """
    folder = Path(folder)
    notebooks = {}
    for path in sorted(folder.glob("*.ipynb")):
        exercises = exercises_of(nbformat.read(str(path), as_version=4))
        if exercises:
            notebooks[path.stem] = exercises
    if not notebooks:
        raise ValueError(f"{folder} holds no notebook with nbgrader test cells")
    return Course(folder.name, notebooks)


def load_packaged() -> Course | None:
    """The course built into this package by the release step, or None in a bare source checkout."""
    if not COURSE_FILE.is_file():
        return None
    return Course.from_json(COURSE_FILE.read_text(encoding="utf-8"))
