"""Every kind of bad submission gets the right score or a clear reason, and the class is still graded.

One small course (a single notebook per student, so each kind costs at most one kernel) is graded twice
by the real CLI; after grading, submitted files are byte-identical and the second run gives the same
grades. Expected outcomes are given per student below.
"""

from __future__ import annotations

import base64
import copy
import csv
import json
import os
import subprocess
import sys
import unicodedata
import zipfile

import nbformat
import pytest

from conftest import ASSIGNMENT, REPO, copy_course, tree_digest, write_roster
from torchsteps.authoring.demo_submissions import instructor_answers
from torchsteps.authoring.submissions import fill_solutions

NOTEBOOK = "02_creating_tensors"
ASSIGNMENT_POINTS = sum(
    float(c.metadata.nbgrader["points"])
    for path in (REPO / "source" / ASSIGNMENT).glob("*.ipynb")
    for c in nbformat.read(str(path), as_version=4).cells
    if c.metadata.get("nbgrader", {}).get("grade")
)
MAX_POINTS = {
    c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader["points"])
    for c in nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4).cells
    if c.metadata.get("nbgrader", {}).get("grade")
}


# Where the instructor's answer relies on the default float dtype, a student who changed it wrote the dtype out.
REAL_WORLD_FLOAT32_ANSWERS = {
    "scalar_tensor": "def scalar_tensor(x):\n    return torch.tensor(x, dtype=torch.float32) if type(x) is float else torch.tensor(x)\n",
    "ramp": "def ramp(start, stop, count):\n    return torch.linspace(start, stop, count, dtype=torch.float32)\n",
    "seeded_noise": "def seeded_noise(seed, shape):\n    g = torch.Generator().manual_seed(seed)\n"
                    "    return torch.randn(shape, generator=g, dtype=torch.float32)\n",
}
REAL_WORLD = ["numpy_star", "torch_star", "default_float64", "colab", "schema_v1", "null_id", "pasted_cell", "zoë"]


def _grade(course, *extra):
    return subprocess.run(
        [sys.executable, "-m", "torchsteps", "--course", str(course), "grade", *extra],
        capture_output=True, text=True, timeout=40 * 60,
    )


def _rows(course):
    with (course / "grades.csv").open(newline="", encoding="utf-8") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def _cells(row):
    return {k.split(":", 1)[1]: v for k, v in row.items() if k.startswith(NOTEBOOK + ":")}


def _test_of(nb, solution_id):
    return f"test_{solution_id}"


def build_class(course):
    """``{student: expectation}``; writes each student's submission into ``course/submitted``."""
    source = nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    release = nbformat.read(str(course / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    answers = instructor_answers(source)
    solutions = list(answers)
    first, second = solutions[0], solutions[1]
    good = fill_solutions(release, answers)
    expect = {}

    def folder(student):
        path = course / "submitted" / student / ASSIGNMENT
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write(student, nb, name=f"{NOTEBOOK}.ipynb"):
        nbformat.write(nb, str(folder(student) / name))

    def raw(student, data: bytes, name=f"{NOTEBOOK}.ipynb"):
        (folder(student) / name).write_bytes(data)

    def with_answer(solution_id, code):
        return fill_solutions(release, dict(answers, **{solution_id: code}))

    # --- files that are not notebooks -------------------------------------------------------------
    raw("invalid_json", b'{"cells": [')
    expect["invalid_json"] = ("error", "not valid notebook JSON")
    raw("empty_file", b"")
    expect["empty_file"] = ("error", "empty file")
    raw("not_utf8", nbformat.writes(good).encode().replace(b"Creating tensors", b"Creating tensors \xff\xfe", 1))
    expect["not_utf8"] = ("full", "UTF-8")
    # --- files renamed, missing or extra ----------------------------------------------------------
    write("renamed", good, name=f"{NOTEBOOK} (1).ipynb")
    expect["renamed"] = ("full", "renamed")
    folder("missing")
    (folder("missing") / "notes.txt").write_text("forgot the notebook")
    expect["missing"] = ("error", "no notebook in submitted/missing")
    write("extra_files", good)
    (folder("extra_files") / "torch.py").write_text("raise SystemExit('shadowed torch')\n")
    (folder("extra_files") / "checks.py").write_text("def check_tensor(*a, **k):\n    pass\n")
    write("extra_files", release, name="scratch.ipynb")
    expect["extra_files"] = ("full", "extra")
    # copied with `cp -a` from a hub: a dangling link stopped the whole class; a followed one brought in
    # an instructor's notebook (graded, and zipped into the feedback)
    write("links", good)
    (folder("links") / "data.csv").symlink_to("/nonexistent/shared/data.csv")
    (folder("links") / "solutions.ipynb").symlink_to(REPO / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    expect["links"] = ("full", "left out, not followed: data.csv (a link), solutions.ipynb (a link)")
    (course / "submitted" / "linked_folder").mkdir(parents=True)
    (course / "submitted" / "linked_folder" / ASSIGNMENT).symlink_to(course / "source" / ASSIGNMENT)
    expect["linked_folder"] = ("error", f"submitted/linked_folder/{ASSIGNMENT} is a link, not a folder")
    # a model's weights saved next to the notebook, or a notebook swollen by outputs: never read whole
    # (before the caps, an 8 GiB file went into memory in the digest, the copy and the Dask client)
    write("huge_file", good)
    with (folder("huge_file") / "weights.pt").open("wb") as f:
        f.truncate(1024**3)  # sparse: takes no disk
    expect["huge_file"] = ("full", "left out, larger than 100 MiB: weights.pt (1.0 GiB)")
    with (folder("huge_notebook") / f"{NOTEBOOK}.ipynb").open("wb") as f:
        f.truncate(150 * 1024**2)
    expect["huge_notebook"] = ("error", f"{NOTEBOOK}.ipynb is 150.0 MiB: a notebook larger than 100 MiB")
    # a folder whose name is not UTF-8 (an archive unpacked on another system): asking the gradebook for it
    # stopped the export after the class was graded
    odd = os.path.join(os.fsencode(course / "submitted"), b"st\xff", ASSIGNMENT.encode())
    os.makedirs(odd)
    nbformat.write(good, os.fsdecode(os.path.join(odd, f"{NOTEBOOK}.ipynb".encode())))
    expect["submitted/st\\xff"] = ("error", "the folder name submitted/st\\xff is not valid UTF-8")  # no folder has a "/"
    (folder("folder_notebook") / f"{NOTEBOOK}.ipynb").mkdir()
    expect["folder_notebook"] = ("error", f"{NOTEBOOK}.ipynb is a folder, not a notebook")
    # --- notebook structure ----------------------------------------------------------------------
    old = copy.deepcopy(good)
    old.nbformat_minor = 0
    for cell in old.cells:
        cell.pop("id", None)
    test_cell = next(c for c in old.cells if c.metadata.get("nbgrader", {}).get("grade_id") == _test_of(old, first))
    test_cell.cell_type = "markdown"
    test_cell.pop("outputs", None)
    test_cell.pop("execution_count", None)
    raw("old_format", json.dumps(old).encode())
    expect["old_format"] = ("full", "")
    dup = copy.deepcopy(good)
    index = next(i for i, c in enumerate(dup.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == _test_of(dup, first))
    clone = copy.deepcopy(dup.cells[index])
    clone.id = "duplicated-cell"
    dup.cells.insert(index + 1, clone)
    write("duplicated_cell", dup)
    expect["duplicated_cell"] = ("full", "")
    deleted = copy.deepcopy(good)
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != _test_of(deleted, first)]
    write("test_deleted", deleted)
    expect["test_deleted"] = ("full", "")
    edited = copy.deepcopy(fill_solutions(release, {}))
    for cell in edited.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            cell.source = "pass"
            meta["points"] = 100
    write("tests_edited", edited)
    expect["tests_edited"] = ("zero", "")
    flipped = copy.deepcopy(fill_solutions(release, {}))
    for cell in flipped.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            meta["grade"] = False
            cell.source = "pass"
    write("grade_flag_flipped", flipped)
    expect["grade_flag_flipped"] = ("zero", "")
    # --- code that misbehaves --------------------------------------------------------------------
    loop = answers[first].replace("def ", "def _unused_", 1) + "\n\ndef " + first + "(*args, **kwargs):\n    while True:\n        pass\n"
    write("infinite_loop", with_answer(first, loop))
    expect["infinite_loop"] = ("lose", first)
    write("memory_bomb", with_answer(first, "import numpy as np\n_hog = np.ones(10**11)\n" + answers[first]))
    expect["memory_bomb"] = ("lose", first)
    write("fork_bomb", with_answer(first, "import os\nfor _ in range(10000):\n    try:\n        os.fork()\n    except OSError:\n        break\n" + answers[first]))
    expect["fork_bomb"] = ("flagged", "os.fork")
    write("kills_kernel", with_answer(second, "import os\nos._exit(1)\n"))
    expect["kills_kernel"] = ("stops_at", second)
    write("huge_output", with_answer(first, "print('x' * 50_000_000)\n" + answers[first]))
    expect["huge_output"] = ("full", "")
    write("stderr_and_warnings", with_answer(first, "import sys, warnings\nprint('debug', file=sys.stderr)\nwarnings.warn('careful')\n" + answers[first].replace("\n    ", "\n    warnings.warn('inside');\n    ", 1)))
    expect["stderr_and_warnings"] = ("full", "")
    write("calls_input", with_answer(first, "name = input('your name? ')\n" + answers[first]))
    expect["calls_input"] = ("lose", first)
    images = copy.deepcopy(good)
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * (36 * 1024 * 1024)).decode()
    images.cells[0].attachments = {"big.png": {"image/png": png}}
    images.cells[0].source += "\n\n![big](attachment:big.png)"
    code_cell = next(c for c in images.cells if c.cell_type == "code" and not c.metadata.get("nbgrader", {}).get("locked"))
    code_cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": png})]
    write("huge_images", images)
    expect["huge_images"] = ("full", "")
    # --- tampering: scored as the code deserves (test cells run in the grader process), flagged as a hint ---
    write("patches_checks", with_answer(first, "import checks, torch\nchecks.check_tensor = lambda *a, **k: None\ntorch.testing.assert_close = lambda *a, **k: None\n"
                                              f"def {first}(*args, **kwargs):\n    return None\n"))
    expect["patches_checks"] = ("flagged", "checks.check_tensor", first)
    write("fake_equal", with_answer(first, f"class Anything:\n    def __eq__(self, other):\n        return True\n\ndef {first}(*args, **kwargs):\n    return Anything()\n"))
    expect["fake_equal"] = ("flagged", "__eq__", first)
    secret = REPO / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    write("reads_source", with_answer(first, f"try:\n    print(open({str(secret)!r}).read()[:100])\nexcept OSError as e:\n    print('no access', e)\n" + answers[first]))
    expect["reads_source"] = ("flagged", "opens a file", None)
    # --- real-world notebooks: every answer correct, one habit from a public bug report (issue 12) ---
    def with_student_cell(nb, code):
        nb = copy.deepcopy(nb)
        at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "setup") + 1
        nb.cells.insert(at, nbformat.v4.new_code_cell(code))
        return nb

    write("numpy_star", with_student_cell(good, "from numpy import *\nprint(min(3, 4), sum([1, 2]))"))
    expect["numpy_star"] = ("full", "")
    write("torch_star", with_student_cell(good, "from torch import *"))
    expect["torch_star"] = ("full", "")
    explicit = dict(answers, **REAL_WORLD_FLOAT32_ANSWERS)
    write("default_float64", with_student_cell(fill_solutions(release, explicit), "import torch\ntorch.set_default_dtype(torch.float64)"))
    expect["default_float64"] = ("full", "")
    colab = json.loads(nbformat.writes(good))
    colab["nbformat_minor"] = 0
    colab["metadata"] = {"colab": {"provenance": []}, "kernelspec": {"name": "python3", "display_name": "Python 3"}}
    for i, cell in enumerate(colab["cells"]):
        cell.pop("id", None)
        cell["metadata"] = {"id": f"colab{i:04d}"}  # Colab keeps its own cell ids in the metadata
    raw("colab", json.dumps(colab).encode())
    expect["colab"] = ("full", "without nbgrader cell metadata")
    schema1 = copy.deepcopy(good)
    for cell in schema1.cells:
        if "nbgrader" in cell.metadata:
            cell.metadata.nbgrader["schema_version"] = 1
            cell.metadata.nbgrader.pop("cell_type", None)
    write("schema_v1", schema1)
    expect["schema_v1"] = ("full", "schema version 1")
    null_id = json.loads(nbformat.writes(good))
    null_id["cells"][2]["id"] = None
    raw("null_id", json.dumps(null_id).encode())
    expect["null_id"] = ("full", "without an id")
    pasted = with_student_cell(good, "x = 1")
    pasted.cells[2].metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False, "grade_id": "cell-4f2a1b", "schema_version": 3}
    write("pasted_cell", pasted)
    expect["pasted_cell"] = ("full", "another notebook")
    nfd = course / "submitted" / unicodedata.normalize("NFD", "zoë") / ASSIGNMENT
    nfd.mkdir(parents=True)
    nbformat.write(good, str(nfd / f"{NOTEBOOK}.ipynb"))
    expect["zoë"] = ("full", "another Unicode form")
    # --- who submits ------------------------------------------------------------------------------
    write("stranger", good)
    expect["stranger"] = ("error", "not on the roster")
    write("fully_correct", good)
    expect["fully_correct"] = ("full", "")
    # --- an LMS bulk download, collected by `make grade` (nbgrader zip_collect) -----------------------
    archive = course / "downloaded" / ASSIGNMENT / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "gradebook_download.zip", "w") as zf:
        zf.writestr(f"PyTorch basics_lms.student_attempt_2026-11-20-09-30-00_{NOTEBOOK}.ipynb", nbformat.writes(good))
        zf.writestr("PyTorch basics_lms.student_attempt_2026-11-20-09-30-00.txt", "submission comment")
    expect["lms.student"] = ("full", "")
    return expect


@pytest.fixture(scope="module")
def bad_class(tmp_path_factory):
    course = tmp_path_factory.mktemp("bad") / "course"
    copy_course(course, demo_class=False)
    expect = build_class(course)
    roster = sorted(s for s in expect if s not in ("stranger", "submitted/st\\xff"))
    write_roster(course, roster)
    with (course / "nbgrader_config.py").open("a", encoding="utf-8") as f:
        f.write("c.GuardedExecute.timeout = 10\nc.GuardedExecute.notebook_timeout = 40\n")
    before = tree_digest(course / "submitted")
    first = _grade(course)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    rows_first = _rows(course)
    # sequential this time, and every submission again (--force): parallel and sequential must agree
    second = _grade(course, "--jobs", "1", "--force")
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    rows_second = _rows(course)
    # `--student zoë` typed as the Mac folder spells it (NFD): the same student, unchanged, so no kernel
    third = _grade(course, "--student", unicodedata.normalize("NFD", "zoë"))
    assert third.returncode == 0 and "zoë: unchanged" in third.stdout, third.stdout[-4000:] + third.stderr[-4000:]
    return course, expect, before, rows_first, rows_second, first.stdout


def test_submitted_files_are_byte_identical_after_grading(bad_class):
    course, _, before, *_ = bad_class
    after = tree_digest(course / "submitted")
    collected = {k for k in after if k.startswith("lms.student/")}
    assert collected, "the LMS download was not collected into submitted/"
    assert {k: v for k, v in after.items() if k not in collected} == before


def test_a_linked_file_reaches_neither_the_graded_copy_nor_the_feedback(bad_class):
    course, *_ = bad_class
    graded = {p.name for p in (course / "autograded" / "links" / ASSIGNMENT).iterdir()}
    assert f"{NOTEBOOK}.ipynb" in graded and not graded & {"data.csv", "solutions.ipynb"}
    assert not any("solutions" in p.name for p in (course / "feedback" / "links").rglob("*"))
    with zipfile.ZipFile(course / "feedback_zips" / ASSIGNMENT / "links.zip") as zf:
        names = zf.namelist()
    assert any(n.endswith(".html") for n in names) and not any("solutions" in n or "data.csv" in n for n in names), names


def test_a_second_sequential_run_gives_the_same_grades(bad_class):
    _, _, _, first, second, _ = bad_class
    strip = lambda rows: {s: {k: v for k, v in r.items()} for s, r in rows.items()}
    assert strip(first) == strip(second)


def _check(student, row, expectation):
    outcome, detail, *lost = expectation
    cells = _cells(row)
    where = f"{student}: {row['status']} {row['score']}/{row['max_score']} {row['reason']!r}"
    if outcome == "error":
        assert row["status"] == "error", where
        assert detail.lower() in row["reason"].lower(), where
        return
    assert row["status"] == "graded", where
    assert float(row["max_score"]) == ASSIGNMENT_POINTS, f"{where}: points changed by the student must not count"
    if detail and outcome in ("full", "zero"):
        assert detail.lower() in row["reason"].lower(), where
    if outcome == "full":
        assert {k: float(v) for k, v in cells.items()} == MAX_POINTS, where
    elif outcome == "zero":
        assert all(float(v or 0) == 0 for v in cells.values()), where
    elif outcome == "lose" and detail:
        lost = {k for k, v in cells.items() if float(v or 0) == 0}
        assert lost == {f"test_{detail}"}, where
    elif outcome == "flagged":
        # Flagged for a look; the grade is what the code earns (only the exercise it breaks is lost).
        assert row["needs_manual_grade"] == "1" and detail in row["flags"], where
        if lost:  # the exercise it breaks (None: none)
            assert {k for k, v in cells.items() if float(v or 0) == 0} == ({f"test_{lost[0]}"} if lost[0] else set()), where
    elif outcome == "stops_at":
        ids = list(cells)
        stop = ids.index(f"test_{detail}")
        assert all(float(cells[k]) > 0 for k in ids[:stop]), where
        assert all(float(cells[k] or 0) == 0 for k in ids[stop:]), where


@pytest.mark.parametrize("student", [
    "invalid_json", "empty_file", "not_utf8", "renamed", "missing", "extra_files", "old_format", "duplicated_cell",
    "test_deleted", "tests_edited", "grade_flag_flipped", "infinite_loop", "memory_bomb", "fork_bomb", "kills_kernel",
    "huge_output", "stderr_and_warnings", "calls_input", "huge_images", "stranger", "fully_correct", "links",
    "linked_folder", "folder_notebook", "huge_file", "huge_notebook", "submitted/st\\xff",
    "patches_checks", "fake_equal", "reads_source", "lms.student", *REAL_WORLD,
])
def test_each_kind_gets_the_right_score_or_a_clear_reason(bad_class, student):
    _, expect, _, rows, _, _ = bad_class
    _check(student, rows[student], expect[student])


@pytest.mark.parametrize("student", REAL_WORLD)
def test_real_world_notebooks_get_full_marks_no_flag_and_feedback(bad_class, student):
    course, expect, _, rows, _, _ = bad_class
    row = rows[student]
    _check(student, row, expect[student])
    assert row["needs_manual_grade"] != "1" and not row["flags"], f"{student}: flagged {row['flags']!r}"
    assert (course / "feedback" / student / ASSIGNMENT / f"{NOTEBOOK}.html").is_file(), f"{student}: no feedback"


def test_a_colab_notebook_whose_cells_cannot_be_recognised_gets_a_plain_reason(tmp_path):
    from torchsteps.grading.staging import UnreadableSubmission, stage_submission

    release = json.loads((REPO / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb").read_text(encoding="utf-8"))
    stripped = copy.deepcopy(release)
    for cell in stripped["cells"]:
        cell["metadata"] = {}
        cell["source"] = "print('rewritten')"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / f"{NOTEBOOK}.ipynb").write_text(json.dumps(stripped), encoding="utf-8")
    expected = {NOTEBOOK: frozenset(MAX_POINTS) | {"setup"}}
    with pytest.raises(UnreadableSubmission, match="no nbgrader cell metadata .*Colab"):
        stage_submission(tmp_path / "in", tmp_path / "out", expected, {NOTEBOOK: release})
