"""Every preprocessor we add or replace, run on each kind of nbgrader cell, beside stock nbgrader's (fast: no kernel).

The cells come from the fixture course (tests/fixtures/other_course, assignment weather_log), which has one
cell of each kind; the gradebook is made by nbgrader's own ``generate_assignment`` (through its Python
API, in-process). Where ours deliberately differs from stock, the test says so and checks exactly that
difference; everywhere else the result must equal stock's. The differences are listed in the README.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_output
from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.preprocessors import ClearHiddenTests, DeduplicateIds, OverwriteCells

from torchsteps.grading.course import open_api, register_roster
from torchsteps.nbgrader_plugins.preprocessors import DeduplicateGradeIds, HideHiddenTests, RestoreCellMetadata, StderrIsNotFailure
from torchsteps.nbgrader_plugins.tamper import COMMENT_PREFIX, FlagTampering
from torchsteps.results.export import collect_rows

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "other_course"
ASSIGNMENT, NOTEBOOK, STUDENT = "weather_log", "temperatures", "ana"
# grade_id -> the nbgrader cell kind it is in the fixture (instructor's "Create Assignment" names).
KINDS = {
    "intro": "read-only markdown",
    "load_readings": "read-only code",
    "mean_celsius": "autograded answer",
    "test_mean_celsius": "autograder tests",
    "warmest_day": "manually graded answer (code)",
    "explain_mean": "manually graded answer (markdown)",
    "task_two_weeks": "task",
}
PLAIN = "plain (no nbgrader metadata)"
FLAGS = ("grade", "solution", "task", "locked", "points")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds") / "course"
    shutil.copytree(FIXTURE / "source", root / "source")
    for name in ("nbgrader_config.py", "students.csv"):  # the config and the roster
        shutil.copy(FIXTURE / name, root / name)
    api = open_api(root)
    register_roster(api)
    made = api.generate_assignment(ASSIGNMENT, force=True)
    assert made["success"], made.get("log")
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        gb.update_or_create_submission(ASSIGNMENT, STUDENT)
    return root, api.coursedir.db_url


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def _resources(db_url: str) -> dict:
    return {"nbgrader": {"db_url": db_url, "assignment": ASSIGNMENT, "notebook": NOTEBOOK, "student": STUDENT}}


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _kind(cell) -> str:
    return KINDS.get(cell.metadata.get("nbgrader", {}).get("grade_id"), PLAIN)


def _flags(cell) -> dict:
    meta = cell.metadata.get("nbgrader", {})
    return {k: meta.get(k, False) if k != "points" else meta.get(k) for k in FLAGS}


def test_the_fixture_has_every_kind_of_cell(course):
    root, _ = course
    nb = _read(root / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    found = {_kind(c) for c in nb.cells}
    assert found == set(KINDS.values()) | {PLAIN}
    assert _flags(_cell(nb, "task_two_weeks")) == {"grade": False, "solution": False, "task": True, "locked": True, "points": 2.0}


# --- RestoreCellMetadata (ours, before stock OverwriteCells) ---------------------------------------

def _restore_and_overwrite(nb, db_url):
    resources = _resources(db_url)
    nb, resources = RestoreCellMetadata().preprocess(nb, resources)
    return OverwriteCells().preprocess(nb, resources)[0]


def test_an_untouched_submission_with_a_task_cell_passes_overwrite_cells(course):
    """Regression: the task cell was restored as a grade cell, and OverwriteCells raised
    "RuntimeError: Inconsistent checksums for cell task_two_weeks"."""
    root, db_url = course
    release = _read(root / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    submitted = _read(FIXTURE / "submitted" / STUDENT / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    nb = _restore_and_overwrite(copy.deepcopy(submitted), db_url)
    for grade_id in KINDS:
        assert _flags(_cell(nb, grade_id)) == _flags(_cell(release, grade_id)), grade_id
    # And stock OverwriteCells alone agrees on the untouched submission: nothing of ours was needed there.
    stock = OverwriteCells().preprocess(copy.deepcopy(submitted), _resources(db_url))[0]
    assert [(_flags(a), a.source) for a in stock.cells] == [(_flags(b), b.source) for b in nb.cells]


@pytest.mark.parametrize("grade_id", list(KINDS))
def test_flags_a_student_changed_are_restored_on_each_kind(course, grade_id):
    root, db_url = course
    release = _read(root / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    nb = copy.deepcopy(release)
    meta = _cell(nb, grade_id).metadata.nbgrader
    for flag in ("grade", "solution", "task", "locked"):
        meta[flag] = not meta.get(flag, False)
    meta["points"] = 100
    restored = _restore_and_overwrite(nb, db_url)
    assert _flags(_cell(restored, grade_id)) == _flags(_cell(release, grade_id))


# --- StderrIsNotFailure (ours, after Execute) -------------------------------------------------------

@pytest.mark.parametrize("grade_id", [*KINDS, None])
def test_stderr_is_relabelled_only_on_test_cells(course, grade_id):
    root, _ = course
    nb = _read(root / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    index = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id) if grade_id \
        else next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "nbgrader" not in c.metadata)
    cell = nb.cells[index]
    if cell.cell_type == "code":
        cell.outputs = [new_output("stream", name="stderr", text="UserWarning: careful\n")]
    before = copy.deepcopy(cell)
    after, _ = StderrIsNotFailure().preprocess_cell(copy.deepcopy(cell), {}, index)
    if _kind(cell) == "autograder tests":
        # Deliberate difference: stock scores a test cell that wrote to stderr 0; ours gives the points.
        assert utils.determine_grade(before) == (0, 2.0)
        assert utils.determine_grade(after) == (2.0, 2.0)
        assert [o.name for o in after.outputs] == ["stdout"] and after.outputs[0].text == before.outputs[0].text
    else:
        assert after == before
        if utils.is_grade(cell):
            assert utils.determine_grade(after) == utils.determine_grade(before)


# --- DeduplicateGradeIds (ours, replaces stock DeduplicateIds) -------------------------------------

def test_deduplicate_equals_stock_without_duplicates(course):
    root, _ = course
    nb = _read(FIXTURE / "submitted" / STUDENT / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    ours = DeduplicateGradeIds().preprocess(copy.deepcopy(nb), {})[0]
    stock = DeduplicateIds().preprocess(copy.deepcopy(nb), {})[0]
    assert ours == stock == nb


@pytest.mark.parametrize("grade_id", list(KINDS))
def test_a_duplicated_cell_of_each_kind_becomes_plain(course, grade_id):
    root, _ = course
    nb = _read(root / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    index = nb.cells.index(_cell(nb, grade_id))
    clone = copy.deepcopy(nb.cells[index])
    clone.id = "duplicate"
    nb.cells.insert(index + 1, clone)
    ours = DeduplicateGradeIds().preprocess(copy.deepcopy(nb), {})[0]
    stock = DeduplicateIds().preprocess(copy.deepcopy(nb), {})[0]
    # Both keep the last copy as it was (nbgrader walks the cells backwards); stock empties the earlier
    # copy's metadata to {} (later steps then fail with KeyError: 'grade_id', jupyter/nbgrader#1083);
    # ours removes it, leaving a plain cell with the student's source.
    assert ours.cells[index + 1] == stock.cells[index + 1] == nb.cells[index + 1]
    assert stock.cells[index].metadata["nbgrader"] == {}
    assert "nbgrader" not in ours.cells[index].metadata
    assert ours.cells[index].source == nb.cells[index].source
    assert [c for i, c in enumerate(ours.cells) if i != index] == [c for i, c in enumerate(stock.cells) if i != index]


# --- HideHiddenTests (ours, replaces ClearHiddenTests in feedback) ----------------------------------

@pytest.mark.parametrize("grade_id", [*KINDS, None])
def test_feedback_hides_hidden_tests_on_each_kind(course, grade_id):
    root, _ = course
    nb = _read(root / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")  # hidden tests still in
    cell = _cell(nb, grade_id) if grade_id else next(c for c in nb.cells if "nbgrader" not in c.metadata)
    if cell.cell_type == "code":
        cell.outputs = [new_output("error", ename="AssertionError", evalue="expected None",
                                   traceback=["Traceback", "    assert mean_celsius(READINGS) == ...  # hidden line", "AssertionError: expected None"])]
    ours = HideHiddenTests().preprocess_cell(copy.deepcopy(cell), {}, 0)[0]
    stock = ClearHiddenTests().preprocess_cell(copy.deepcopy(cell), {}, 0)[0]
    if _kind(cell) == "autograder tests":
        # Deliberate difference: a note replaces the hidden region, and tracebacks shrink to their last
        # line (stock keeps the traceback, which quotes the hidden line).
        assert "BEGIN HIDDEN TESTS" not in ours.source and "mean_celsius(READINGS)" not in ours.source
        assert ours.source == stock.source.rstrip("\n") + "\n# (hidden tests are not shown)"
        assert ours.outputs[0].traceback == ["AssertionError: expected None"]
        assert "hidden line" in "".join(stock.outputs[0].traceback)
    else:
        assert ours == stock


def test_a_hidden_region_typed_into_a_student_cell_does_not_stop_feedback(course):
    root, _ = course
    nb = _read(FIXTURE / "submitted" / STUDENT / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    cell = copy.deepcopy(next(c for c in nb.cells if c.cell_type == "code" and "nbgrader" not in c.metadata))
    cell.source = "x = 1\n### BEGIN HIDDEN TESTS\ny = 2\n### END HIDDEN TESTS"
    # Deliberate difference: stock feedback raises for the whole notebook; ours removes the region.
    with pytest.raises(RuntimeError, match="Hidden test region detected in a non-grade cell"):
        ClearHiddenTests().preprocess_cell(copy.deepcopy(cell), {}, 0)
    assert HideHiddenTests().preprocess_cell(cell, {}, 0)[0].source.startswith("x = 1\n")


# --- FlagTampering (ours, added after SaveAutoGrades) -----------------------------------------------

@pytest.mark.parametrize("grade_id", [*KINDS, None])
def test_tampering_is_looked_for_only_in_cells_the_student_writes(course, grade_id):
    root, db_url = course
    nb = _read(root / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    cell = _cell(nb, grade_id) if grade_id else next(c for c in nb.cells if c.cell_type == "code" and "nbgrader" not in c.metadata)
    cell.source += "\nsecret = open('/etc/hostname').read()\n"
    with Gradebook(db_url) as gb:
        gb.update_or_create_submission(ASSIGNMENT, STUDENT)  # fresh flags and comments
        notebook = gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, STUDENT)
        notebook.flagged = False
        for comment in notebook.comments:
            comment.auto_comment = None
        gb.db.commit()
    out, _ = FlagTampering().preprocess(nb, _resources(db_url))
    found = out.metadata["torchsteps"]["tamper"]
    student_writes = cell.cell_type == "code" and _kind(cell) in ("autograded answer", "manually graded answer (code)", PLAIN)
    assert bool(found) == student_writes, (_kind(cell), found)
    with Gradebook(db_url) as gb:
        notebook = gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, STUDENT)
        comments = {c.cell.name: c.auto_comment for c in notebook.comments if c.auto_comment}
        assert notebook.flagged == student_writes
        if student_writes:
            # The comment sits on the answer (or, for a cell the student added, the task above it) and
            # names the cell as the student sees it: its position and the heading above it.
            target = grade_id or "task_two_weeks"
            position = nb.cells.index(cell) + 1
            assert list(comments) == [target]
            assert comments[target].startswith(f"{COMMENT_PREFIX}cell {position} (under \"")
            assert "opens a file" in comments[target]
            assert all(g.needs_manual_grade for g in notebook.grades)
        # grades.csv and the report read the flag back from the gradebook.
        (row,) = [r for r in collect_rows(gb, root, ASSIGNMENT)[1] if r.student_id == STUDENT]
        expected = (f"{NOTEBOOK}: {comments[target][len(COMMENT_PREFIX):]}",) if student_writes else ()
        assert (row.flags, row.flagged) == (expected, student_writes)


# --- CheckCellMetadataCompiled (ours, in place of stock CheckCellMetadata) -----------------------------

def _corrupt(meta: dict, how: str) -> None:
    if how == "points missing":
        meta.pop("points", None)
    elif how == "points not a number":
        meta["points"] = "two"
    elif how == "grade_id empty":
        meta["grade_id"] = ""
    elif how == "grade_id missing":
        meta.pop("grade_id", None)
    elif how == "flag not a boolean":
        meta["locked"] = "yes"
    elif how == "schema too old":
        meta["schema_version"] = 1
    elif how == "schema too new":
        meta["schema_version"] = 99
    elif how == "unknown key":
        meta["colour"] = "red"


def _outcome(validator_cls, nb):
    try:
        validator_cls().validate_nb(nb)
    except Exception as e:  # the exact type and message are compared
        return type(e), str(e)
    return None


CORRUPTIONS = ["untouched", "points missing", "points not a number", "grade_id empty", "grade_id missing",
               "flag not a boolean", "schema too old", "schema too new", "unknown key"]


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("grade_id", list(KINDS))
def test_compiled_metadata_check_equals_stock_on_each_kind(course, grade_id, how):
    from nbgrader.nbgraderformat import MetadataValidator

    from torchsteps.nbgrader_plugins.preprocessors import CompiledMetadataValidator

    root, _ = course
    nb = _read(root / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    _corrupt(_cell(nb, grade_id).metadata["nbgrader"], how)
    stock, ours = _outcome(MetadataValidator, copy.deepcopy(nb)), _outcome(CompiledMetadataValidator, copy.deepcopy(nb))
    assert ours == stock
    if how == "untouched":
        assert stock is None
    elif how in ("points not a number", "flag not a boolean", "schema too old", "schema too new", "grade_id empty"):
        assert stock is not None, "the corruption must be one stock nbgrader refuses, or the comparison proves little"


def test_compiled_metadata_check_refuses_a_duplicated_grade_id_like_stock(course):
    from nbgrader.preprocessors import CheckCellMetadata

    from torchsteps.nbgrader_plugins.preprocessors import CheckCellMetadataCompiled

    root, _ = course
    nb = _read(root / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    nb.cells.append(copy.deepcopy(_cell(nb, "mean_celsius")))
    outcomes = []
    for step in (CheckCellMetadata, CheckCellMetadataCompiled):
        with pytest.raises(Exception) as raised:
            step().preprocess(copy.deepcopy(nb), {})
        outcomes.append((type(raised.value), str(raised.value)))
    assert outcomes[0] == outcomes[1]
    assert "corrupted" in outcomes[1][1]


def test_compiled_metadata_check_checks_the_schema_once(course, monkeypatch):
    """Stock checks nbgrader's JSON schema against its metaschema at every cell (the cost this step removes)."""
    import jsonschema

    from torchsteps.nbgrader_plugins.preprocessors import CheckCellMetadataCompiled, CompiledMetadataValidator

    root, _ = course
    nb = _read(root / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    monkeypatch.setattr(CompiledMetadataValidator, "_compiled", {})
    schema_cls = jsonschema.validators.validator_for(CompiledMetadataValidator().schema)
    checks = []
    original = schema_cls.check_schema.__func__
    monkeypatch.setattr(schema_cls, "check_schema", classmethod(lambda cls, s: checks.append(1) or original(cls, s)))
    graded = sum(1 for c in nb.cells if "nbgrader" in c.metadata)
    assert graded >= 5
    for _ in range(3):
        CheckCellMetadataCompiled().preprocess(copy.deepcopy(nb), {})
    assert len(checks) == 1
