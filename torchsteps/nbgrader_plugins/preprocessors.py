"""nbgrader preprocessors that fix upstream behaviour for this course.

They are plugged in through ``nbgrader_config.py`` (``Autograde.autograde_preprocessors`` and
``GenerateFeedback.preprocessors``), so every nbgrader entry point (``nbgrader autograde``, the
formgrader, ``make grade``) uses them.
"""

from __future__ import annotations

import traceback

import jsonschema
from jsonschema.exceptions import best_match
from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.nbgraderformat import MetadataValidator, SchemaTooNewError, SchemaTooOldError, ValidationError
from nbgrader.nbgraderformat.common import BaseMetadataValidator
from nbgrader.preprocessors import CheckCellMetadata, ClearHiddenTests, DeduplicateIds, NbGraderPreprocessor, SaveAutoGrades

from ..constants import is_test_cell

__all__ = ["StderrIsNotFailure", "HideHiddenTests", "DeduplicateGradeIds", "RestoreCellMetadata", "restore_flags",
           "CheckCellMetadataCompiled",
           "SaveAutoGradesKeepingManual"]


class SaveAutoGradesKeepingManual(SaveAutoGrades):
    """``SaveAutoGrades`` that never reopens a cell an instructor graded by hand.

    Stock ``SaveAutoGrades._add_score`` sets ``needs_manual_grade = True`` on every autograde of a cell
    that has a ``manual_score`` (nbgrader 0.9.6, nbgrader/preprocessors/saveautogrades.py), so each
    regrade puts hand-graded cells back on the formgrader's to-do list. Here a cell whose manual grade
    was done (``manual_score`` set, ``needs_manual_grade`` False, what the formgrader's ``PUT
    /formgrader/api/grade/<id>`` leaves) stays done; its ``auto_score`` is still updated, and the
    manual score still counts (``Grade.score`` prefers it).
    """

    def _add_score(self, cell: NotebookNode, resources: ResourcesDict) -> None:
        grade = self.gradebook.find_grade(cell.metadata["nbgrader"]["grade_id"], self.notebook_id, self.assignment_id, self.student_id)
        done_by_hand = grade.manual_score is not None and not grade.needs_manual_grade
        super()._add_score(cell, resources)
        if done_by_hand:
            grade.needs_manual_grade = False
            self.gradebook.db.commit()


class StderrIsNotFailure(NbGraderPreprocessor):
    """Relabel stderr output of test cells as stdout, so that a warning does not cost the points.

    nbgrader's ``utils.determine_grade`` scores a test cell 0 as soon as the cell wrote anything to
    stderr, so a ``UserWarning`` raised by correct code (a deprecation in torch, say) zeroes the test.
    Failures in our test cells are exceptions (``error`` outputs), which this leaves alone. The text
    stays visible in the autograded notebook and the feedback.

    Runs after ``Execute`` and before ``SaveAutoGrades``.
    """

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict, cell_index: int):
        if is_test_cell(cell):
            for output in cell.get("outputs", []):
                if output.output_type == "stream" and output.name == "stderr":
                    output.name = "stdout"
        return cell, resources


class HideHiddenTests(ClearHiddenTests):
    """Remove hidden tests from the feedback, including the source lines quoted in tracebacks.

    Upstream feedback prints the whole test cell, hidden tests included (jupyter/nbgrader#917), and
    IPython's traceback quotes the failing hidden line. For each test cell that had a hidden region,
    this removes the region (as ``generate_assignment`` does) and shortens every error in that cell to
    its last line (``AssertionError: f(x): expected dtype torch.float32, got torch.int64``), whose
    message is written not to give the answer away.
    """

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict, cell_index: int):
        had_hidden_tests = self._remove_hidden_test_region(cell)
        if had_hidden_tests:
            cell.source = cell.source.rstrip("\n") + "\n# (hidden tests are not shown)"
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources


class DeduplicateGradeIds(DeduplicateIds):
    """nbgrader's ``DeduplicateIds``, fixed: a duplicated graded cell no longer stops the submission.

    Upstream empties the duplicate's ``nbgrader`` metadata (``{}``), and later steps then fail with
    ``KeyError: 'grade_id'`` on it (jupyter/nbgrader#1083). Here the metadata is removed, so the
    duplicate becomes a plain cell; the last copy keeps its grade_id, as upstream intended.
    """

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict, cell_index: int):
        if not (utils.is_grade(cell) or utils.is_solution(cell) or utils.is_locked(cell)):
            return cell, resources
        grade_id = cell.metadata.nbgrader.get("grade_id")
        if grade_id in self.grade_ids:
            self.log.warning("Cell with id '%s' exists multiple times; the earlier copy is graded as a plain cell", grade_id)
            del cell.metadata["nbgrader"]
        else:
            self.grade_ids.add(grade_id)
        return cell, resources


class RestoreCellMetadata(NbGraderPreprocessor):
    """Reset the nbgrader flags of every known cell from the gradebook before ``OverwriteCells``.

    A student who flips a test cell's ``grade`` or ``solution`` flag makes upstream ``OverwriteCells``
    fail with "Inconsistent checksums" (the checksum covers the flags), which stops the submission.
    The instructor's version is the truth: ``grade``, ``solution``, ``task``, ``locked`` and ``points``
    come from the gradebook for every cell whose grade_id it knows, with each kind of cell kept apart:
    a task cell (``TaskCell``) has points but is not a grade cell, so it gets ``task`` and ``points`` and
    ``grade = False`` (``Gradebook.find_graded_cell`` returns grade and task cells alike; taking its
    answer as "grade cell" made every task cell fail with "Inconsistent checksums").
    """

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict):
        info = resources["nbgrader"]
        # The notebook's cells in three reads, not three queries per cell (profiling: about 90 queries a
        # notebook, 0.2 s or more of every notebook's autograde).
        with Gradebook(info["db_url"]) as gb:
            try:
                notebook = gb.find_notebook(info["notebook"], info["assignment"])
            except MissingEntry:
                return nb, resources
            locked = {c.name: bool(c.locked) for c in notebook.source_cells}
            solutions = {c.name for c in notebook.solution_cells}
            grade_cells = {c.name: c for c in notebook.grade_cells}
            task_cells = {c.name: c for c in notebook.task_cells}
            for cell in nb.cells:
                meta = cell.metadata.get("nbgrader")
                grade_id = meta.get("grade_id") if meta else None
                if not grade_id or grade_id not in locked:
                    continue
                restore_flags(
                    meta,
                    locked=locked[grade_id],
                    solution=grade_id in solutions,
                    grade_cell=grade_cells.get(grade_id),
                    task_cell=task_cells.get(grade_id),
                )
        return nb, resources


def restore_flags(meta: dict, *, locked: bool, solution: bool, grade_cell=None, task_cell=None) -> dict:
    """Set a cell's nbgrader ``meta`` (in place) to what the gradebook says the cell is; returns ``meta``.

    ``grade_cell``/``task_cell``: the gradebook's ``GradeCell``/``TaskCell`` of that grade_id, or ``None``.
    """
    meta["locked"] = locked
    meta["solution"] = solution
    meta["grade"] = grade_cell is not None
    meta["task"] = task_cell is not None
    graded = grade_cell if grade_cell is not None else task_cell
    if graded is not None:
        meta["points"] = float(graded.max_score)
    else:
        meta.pop("points", None)
    return meta


class _SchemaCheckedOnce(BaseMetadataValidator):
    """nbgrader's per-cell checks of ``BaseMetadataValidator.validate_cell`` with the JSON schema compiled once.

    Upstream calls ``jsonschema.validate(meta, schema)`` for every cell, which checks the schema itself
    against its metaschema each time (jsonschema 4: ``check_schema`` on every call): profiling, 1.1 s of
    the 1.2 s ``CheckCellMetadata`` took for 20 notebooks, run 2-3 times per notebook. The schema is a
    file of the installed nbgrader, so it is checked once per process; the errors raised are the same.
    """

    _compiled: dict = {}

    def validate_cell(self, cell: NotebookNode) -> None:
        # Same version checks as upstream (nbgrader 0.9.6, nbgraderformat/common.py), then the same validation.
        if "nbgrader" not in cell.metadata:
            return
        schema = cell.metadata["nbgrader"].get("schema_version", 0)
        if schema < self.schema_version:
            raise SchemaTooOldError(f"Outdated schema version: {schema} (expected {self.schema_version})",
                                    schema, self.schema_version)
        if schema > self.schema_version:
            raise SchemaTooNewError(f"Schema version is too new: {schema} (expected {self.schema_version})",
                                    schema, self.schema_version)
        validator = self._compiled.get(self.schema_version)
        if validator is None:
            cls = jsonschema.validators.validator_for(self.schema)
            cls.check_schema(self.schema)
            validator = self._compiled[self.schema_version] = cls(self.schema)
        error = best_match(validator.iter_errors(cell.metadata["nbgrader"]))
        if error is not None:
            raise error


class CompiledMetadataValidator(MetadataValidator, _SchemaCheckedOnce):
    """nbgrader's ``MetadataValidator`` (schema v3 checks: grade ids, points, duplicates) on the compiled schema."""


class CheckCellMetadataCompiled(CheckCellMetadata):
    """nbgrader's ``CheckCellMetadata`` with the same checks and errors, on :class:`CompiledMetadataValidator`."""

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict):
        try:
            CompiledMetadataValidator().validate_nb(nb)
        except ValidationError:
            self.log.error(traceback.format_exc())
            msg = "Notebook failed to validate; the nbgrader metadata may be corrupted."
            self.log.error(msg)
            raise ValidationError(msg)
        return nb, resources
