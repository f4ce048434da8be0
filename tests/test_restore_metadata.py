"""RestoreCellMetadata puts back the instructor's nbgrader flags from the gradebook (fast: no kernel).

It reads a notebook's cells in three queries (it used to make three per cell); this checks every flag of
every cell of every notebook against the source notebooks, after a student flipped them.
"""

from __future__ import annotations

import copy

import nbformat
import pytest

from conftest import ASSIGNMENT, REPO, copy_course
from torchsteps.grading.course import open_api
from torchsteps.nbgrader_plugins.preprocessors import RestoreCellMetadata


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = copy_course(tmp_path_factory.mktemp("restore") / "course", demo_class=False)
    api = open_api(root)
    assert api.generate_assignment(ASSIGNMENT, force=True)["success"]
    return api


def _flags(cell) -> dict:
    meta = cell.metadata.get("nbgrader", {})
    return {k: meta.get(k) for k in ("grade", "solution", "locked", "points")}


@pytest.mark.parametrize("path", sorted((REPO / "source" / ASSIGNMENT).glob("*.ipynb")), ids=lambda p: p.stem)
def test_flipped_flags_are_restored_from_the_gradebook(course, path):
    source = nbformat.read(str(path), as_version=4)
    release = nbformat.read(str(REPO / "release" / ASSIGNMENT / path.name), as_version=4)
    expected = {c.metadata.nbgrader["grade_id"]: _flags(c) for c in release.cells if c.metadata.get("nbgrader", {}).get("grade_id")}
    assert any(f["grade"] for f in expected.values()) and any(f["solution"] for f in expected.values())
    flipped = copy.deepcopy(release)
    for cell in flipped.cells:
        meta = cell.metadata.get("nbgrader")
        if meta and meta.get("grade_id"):
            meta.update(grade=not meta.get("grade"), solution=not meta.get("solution"), locked=not meta.get("locked"), points=99)
    flipped.cells.append(nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade_id": "not_in_the_gradebook", "grade": True, "points": 5}}))
    resources = {"nbgrader": {"db_url": course.coursedir.db_url, "notebook": path.stem, "assignment": ASSIGNMENT}}
    restored, _ = RestoreCellMetadata().preprocess(flipped, resources)
    got = {c.metadata.nbgrader["grade_id"]: _flags(c) for c in restored.cells if c.metadata.get("nbgrader", {}).get("grade_id")}
    unknown = got.pop("not_in_the_gradebook")
    assert unknown == {"grade": True, "solution": None, "locked": None, "points": 5}, "a cell the gradebook does not know is left alone"
    for grade_id, flags in expected.items():
        want = {**flags, "locked": bool(flags["locked"]), "solution": bool(flags["solution"]), "grade": bool(flags["grade"])}
        if not want["grade"]:
            want["points"] = None
        else:
            want["points"] = float(want["points"])
        assert got[grade_id] == want, grade_id
    assert len(source.cells) >= len(expected)


def test_a_notebook_unknown_to_the_gradebook_is_left_alone(course):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1", metadata={"nbgrader": {"grade_id": "x", "grade": True, "points": 1}})])
    resources = {"nbgrader": {"db_url": course.coursedir.db_url, "notebook": "99_extra", "assignment": ASSIGNMENT}}
    out, _ = RestoreCellMetadata().preprocess(copy.deepcopy(nb), resources)
    assert out == nb
