"""Staged copies of a submission (torchsteps.grading.staging), on files only: no nbgrader, no kernel."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from torchsteps.grading.staging import UnreadableSubmission, stage_submission

EXPECTED = {"01_intro": frozenset({"a", "test_a"}), "02_more": frozenset({"b", "test_b", "test_c"})}


def _notebook(*grade_ids: str) -> dict:
    cells = [new_code_cell("x = 1", metadata={"nbgrader": {"grade_id": g, "grade": False, "solution": True}}) for g in grade_ids]
    return json.loads(nbformat.writes(new_notebook(cells=cells)))


def _write(folder, name, nb_or_bytes):
    folder.mkdir(parents=True, exist_ok=True)
    data = nb_or_bytes if isinstance(nb_or_bytes, bytes) else json.dumps(nb_or_bytes).encode()
    (folder / name).write_bytes(data)


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_renamed_notebook_is_staged_under_the_expected_name(tmp_path):
    submitted, staged = tmp_path / "submitted", tmp_path / "staged"
    _write(submitted, "01_intro.ipynb", _notebook("a", "test_a"))
    _write(submitted, "Copy of 02_more (1).ipynb", _notebook("b", "test_b"))
    before = _snapshot(submitted)
    notes = stage_submission(submitted, staged, EXPECTED)
    assert sorted(p.name for p in staged.glob("*.ipynb")) == ["01_intro.ipynb", "02_more.ipynb"]
    assert notes == ["renamed notebook 'Copy of 02_more (1).ipynb' graded as '02_more.ipynb'"]
    assert _snapshot(submitted) == before, "the submitted files were modified"


def test_a_notebook_matching_too_few_cells_is_not_renamed(tmp_path):
    submitted, staged = tmp_path / "submitted", tmp_path / "staged"
    _write(submitted, "scratch.ipynb", _notebook("b"))  # 1 of 3 cells of 02_more: not more than half
    assert stage_submission(submitted, staged, EXPECTED) == []
    assert [p.name for p in staged.glob("*.ipynb")] == ["scratch.ipynb"]


def test_old_nbformat_is_upgraded_with_cell_ids(tmp_path):
    submitted, staged = tmp_path / "submitted", tmp_path / "staged"
    nb = _notebook("a", "test_a")
    nb["nbformat_minor"] = 4
    for cell in nb["cells"]:
        del cell["id"]
    _write(submitted, "01_intro.ipynb", nb)
    notes = stage_submission(submitted, staged, EXPECTED)
    assert notes == ["01_intro.ipynb: upgraded from nbformat 4.4 to 4.5"]
    upgraded = nbformat.read(str(staged / "01_intro.ipynb"), as_version=4)
    nbformat.validate(upgraded)
    assert all(cell.get("id") for cell in upgraded.cells)


def test_bytes_that_are_not_utf8_are_replaced(tmp_path):
    submitted, staged = tmp_path / "submitted", tmp_path / "staged"
    text = json.dumps(_notebook("a", "test_a")).replace("x = 1", "x = '\\u00e9'")
    _write(submitted, "01_intro.ipynb", text.encode().replace(b"x = ", b"x = \xff"))
    notes = stage_submission(submitted, staged, EXPECTED)
    assert notes == ["01_intro.ipynb: bytes that are not UTF-8 were replaced"]
    assert "\ufffd" in (staged / "01_intro.ipynb").read_text(encoding="utf-8")


@pytest.mark.parametrize("content, reason", [
    (b"", "01_intro.ipynb is an empty file, not a notebook"),
    (b"{ not json", "01_intro.ipynb is not valid notebook JSON"),
    (b"[1, 2]", "01_intro.ipynb is JSON but not a notebook (no cells)"),
])
def test_unreadable_notebooks_give_a_plain_reason(tmp_path, content, reason):
    submitted = tmp_path / "submitted"
    _write(submitted, "01_intro.ipynb", content)
    with pytest.raises(UnreadableSubmission, match=reason.replace("(", r"\(").replace(")", r"\)")):
        stage_submission(submitted, tmp_path / "staged", EXPECTED)
