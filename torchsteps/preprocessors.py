"""nbgrader preprocessors that fix upstream behaviour for this course.

They are plugged in through ``nbgrader_config.py`` (``Autograde.autograde_preprocessors`` and
``GenerateFeedback.preprocessors``), so every nbgrader entry point (``nbgrader autograde``, the
formgrader, ``make grade``) uses them.
"""

from __future__ import annotations

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor

__all__ = ["StderrIsNotFailure", "HideHiddenTests"]


class StderrIsNotFailure(NbGraderPreprocessor):
    """Relabel stderr output of test cells as stdout, so that a warning does not cost the points.

    nbgrader's ``utils.determine_grade`` scores a test cell 0 as soon as the cell wrote anything to
    stderr, so a ``UserWarning`` raised by correct code (a deprecation in torch, say) zeroes the test.
    Failures in our test cells are exceptions (``error`` outputs), which this leaves alone. The text
    stays visible in the autograded notebook and the feedback.

    Runs after ``Execute`` and before ``SaveAutoGrades``.
    """

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict, cell_index: int):
        if cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell):
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
