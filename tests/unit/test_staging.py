"""Staged copies of a submission (torchsteps.grading.staging), on files only: no nbgrader, no kernel."""

from __future__ import annotations

import json
import os
import shutil

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


# --- real-world notebooks (issue 12) -------------------------------------------------------------------

def _graded(grade_id, source, **flags):
    meta = {"grade_id": grade_id, "grade": False, "solution": False, "locked": False, "schema_version": 3, **flags}
    return new_code_cell(source, metadata={"nbgrader": meta})


def _release():
    cells = [_graded("a", "def a():\n    raise NotImplementedError()", solution=True),
             _graded("test_a", "assert a() == 1", grade=True, locked=True, points=1)]
    return json.loads(nbformat.writes(new_notebook(cells=cells)))


def test_schema_1_null_ids_and_a_pasted_foreign_cell_are_repaired(tmp_path):
    nb = _release()
    for cell in nb["cells"]:
        cell["metadata"]["nbgrader"]["schema_version"] = 1
    nb["cells"][0]["id"] = None
    pasted = json.loads(nbformat.writes(new_notebook(cells=[_graded("cell-9f", "x = 2", solution=True)])))["cells"][0]
    nb["cells"].insert(1, pasted)
    _write(tmp_path / "in", "01_intro.ipynb", nb)
    notes = stage_submission(tmp_path / "in", tmp_path / "out", {"01_intro": frozenset({"a", "test_a"})})
    assert any("schema version 1 upgraded to 3" in n for n in notes)
    assert any('"id": null' in n for n in notes) and any("grade_id cell-9f" in n for n in notes)
    staged = nbformat.read(str(tmp_path / "out" / "01_intro.ipynb"), as_version=4)
    nbformat.validate(staged)
    assert [c.metadata.get("nbgrader", {}).get("grade_id") for c in staged.cells] == ["a", None, "test_a"]
    assert all(c.metadata["nbgrader"]["schema_version"] == 3 for c in staged.cells if "nbgrader" in c.metadata)


def test_a_notebook_without_nbgrader_metadata_gets_it_back_from_the_release(tmp_path):
    release = _release()
    colab = json.loads(json.dumps(release))
    colab["cells"][0]["source"] = "def a():\n    return 1"
    colab["cells"].insert(1, json.loads(nbformat.writes(new_notebook(cells=[new_code_cell("print(a())")])))["cells"][0])
    for cell in colab["cells"]:
        cell["metadata"] = {"id": "colab"}
    _write(tmp_path / "in", "01_intro.ipynb", colab)
    notes = stage_submission(tmp_path / "in", tmp_path / "out", {"01_intro": frozenset({"a", "test_a"})}, {"01_intro": release})
    assert any("recognised 2 of 2 graded cells" in n for n in notes)
    staged = nbformat.read(str(tmp_path / "out" / "01_intro.ipynb"), as_version=4)
    # the answer cell is the one that still starts with `def a():`, not the student's own cell after it
    assert [c.metadata.get("nbgrader", {}).get("grade_id") for c in staged.cells] == ["a", None, "test_a"]


# --- links and special files (review: a dangling link stopped the whole class; a link brought a source notebook in)


def test_links_and_special_files_are_left_out_named_and_never_followed(tmp_path):
    submitted = tmp_path / "submitted"
    _write(submitted, "01_intro.ipynb", _notebook("a", "test_a"))
    secret = tmp_path / "source" / "02_more.ipynb"  # the instructor's notebook, with its solutions
    _write(secret.parent, secret.name, _notebook("b", "test_b", "test_c"))
    (submitted / "02_more.ipynb").symlink_to(secret)
    (submitted / "data.csv").symlink_to(tmp_path / "nowhere" / "data.csv")  # dangling, as cp -a leaves them
    (submitted / "srcdir").symlink_to(secret.parent, target_is_directory=True)
    # (no link to /dev/zero here: a regression would fill the disk before failing)
    os.mkfifo(submitted / "pipe")
    (submitted / "sub").mkdir()
    (submitted / "sub" / "kept.txt").write_text("mine")
    (submitted / "sub" / "link.txt").symlink_to(secret)
    before = {p.name: os.lstat(p) for p in submitted.rglob("*")}
    staged = tmp_path / "staged"
    notes = stage_submission(submitted, staged, EXPECTED)
    assert notes == ["left out, not followed: 02_more.ipynb (a link), data.csv (a link), pipe (not a regular file), "
                     "srcdir (a link), sub/link.txt (a link)"]
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*")) == ["01_intro.ipynb", "sub", "sub/kept.txt"]
    assert {p.name: os.lstat(p) for p in submitted.rglob("*")} == before  # the submission is as it was


def test_a_file_that_cannot_be_read_is_a_reason_on_the_row(tmp_path, monkeypatch):
    # As a grading user who may not read it (root may: the refusal is simulated where the copy opens it).
    submitted = tmp_path / "submitted"
    _write(submitted, "01_intro.ipynb", _notebook("a", "test_a"))
    (submitted / "secret.txt").write_text("x")
    real_open = os.open

    def refuse(path, *args, **kwargs):
        if os.fspath(path).endswith("secret.txt"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(UnreadableSubmission, match=r"could not read secret.txt from the submission: Permission denied"):
        stage_submission(submitted, tmp_path / "staged", EXPECTED)


def test_a_folder_that_cannot_be_listed_is_a_reason_on_the_row(tmp_path, monkeypatch):
    submitted = tmp_path / "submitted"
    _write(submitted, "01_intro.ipynb", _notebook("a", "test_a"))
    (submitted / "private").mkdir()
    real_scandir = os.scandir

    def refuse(path="."):
        if os.fspath(path).endswith("private"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(UnreadableSubmission, match=r"could not read private from the submission: Permission denied"):
        stage_submission(submitted, tmp_path / "staged", EXPECTED)


def test_a_folder_named_like_a_notebook_is_a_reason_not_a_crash(tmp_path):
    # Review: a folder `01_intro.ipynb` raised IsADirectoryError, which stopped the whole class.
    submitted = tmp_path / "submitted"
    (submitted / "01_intro.ipynb").mkdir(parents=True)
    with pytest.raises(UnreadableSubmission, match="01_intro.ipynb is a folder, not a notebook"):
        stage_submission(submitted, tmp_path / "staged", EXPECTED)


def test_a_linked_student_or_assignment_folder_is_named(tmp_path):
    from torchsteps.grading.staging import folder_problem

    (tmp_path / "source" / "a").mkdir(parents=True)
    (tmp_path / "submitted" / "ada").mkdir(parents=True)
    (tmp_path / "submitted" / "ada" / "a").symlink_to(tmp_path / "source" / "a")
    (tmp_path / "submitted" / "ben").symlink_to(tmp_path / "submitted" / "ada")
    (tmp_path / "submitted" / "cy" / "a").mkdir(parents=True)
    assert folder_problem(tmp_path / "submitted" / "ada", "a").startswith("submitted/ada/a is a link, not a folder")
    assert folder_problem(tmp_path / "submitted" / "ben", "a").startswith("submitted/ben is a link, not a folder")
    assert folder_problem(tmp_path / "submitted" / "cy", "a") is None


@pytest.mark.parametrize("content, reason", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"cells": 5, "nbformat": 4, "nbformat_minor": 2}', "not a list of cells"),
    (b'{"cells": [1], "nbformat": 4, "nbformat_minor": 5}', "not a list of cells"),
    (b'{"cells": [], "nbformat": 4, "nbformat_minor": "x"}', "nbformat is not a number"),
])
def test_json_of_the_wrong_shape_is_a_reason_not_a_crash(tmp_path, content, reason):
    # Review: these raised RecursionError, TypeError or AttributeError, which stopped the whole class (-j 1).
    submitted = tmp_path / "submitted"
    _write(submitted, "01_intro.ipynb", content)
    with pytest.raises(UnreadableSubmission, match=reason):
        stage_submission(submitted, tmp_path / "staged", EXPECTED)


_AS_GRADER = """
import sys
from pathlib import Path
from types import SimpleNamespace
from torchsteps.grading.driver import list_submissions
from torchsteps.grading.incremental import submission_digest
from torchsteps.grading.staging import folder_problem, submission_folder
root = Path(sys.argv[1])
cd = SimpleNamespace(root=str(root), submitted_directory="submitted", source_directory="source")
print(list_submissions(SimpleNamespace(coursedir=cd), "a"))
for student in ("ada", "bob"):
    print(folder_problem(submission_folder(root / "submitted", student), "a"))
    print(len(submission_digest(cd, "a", student)))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root (to act as nobody) and setpriv")
def test_a_folder_the_grading_user_may_not_look_into_is_named_not_a_crash():
    # Review: below a `chmod 000` folder (kept by `cp -a` from a hub) Path.is_dir raises PermissionError for a
    # grading user who is not root; list_submissions and grade_submission let it out and the class stopped.
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="torchsteps-test-unreadable-", dir="/var/tmp"))
    try:
        os.chmod(root, 0o755)
        for student in ("ada", "bob"):
            (root / "submitted" / student / "a").mkdir(parents=True)
            (root / "submitted" / student / "a" / "n.ipynb").write_text("{}")
        for folder in root.rglob("*"):
            os.chmod(folder, 0o755 if folder.is_dir() else 0o644)
        os.chmod(root / "submitted" / "ada", 0o000)
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c"]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        if subprocess.run([*as_nobody, "import torchsteps.grading.driver"], capture_output=True, env=env, timeout=120).returncode:
            pytest.skip("this Python, or this checkout, cannot be read by user nobody here")
        done = subprocess.run([*as_nobody, _AS_GRADER, str(root)], capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.splitlines() == ["['ada', 'bob']", "submitted/ada/a cannot be read by the grading user: Permission denied",
                                            "64", "None", "64"]
    finally:
        os.chmod(root / "submitted" / "ada", 0o755)
        shutil.rmtree(root, ignore_errors=True)
