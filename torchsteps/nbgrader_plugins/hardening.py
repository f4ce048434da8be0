"""The hardening of nbgrader, as one call any course's ``nbgrader_config.py`` makes.

    from torchsteps.nbgrader_plugins.hardening import harden
    c = get_config()
    harden(c)
    # then the course's own settings: root, course_id, roster, limits, late penalty ...

It sets nbgrader's preprocessor lists (upstream's order, with our replacements and additions), the
sandboxed execute step, feedback without hidden tests, and the per-exercise export. Every setting is an
ordinary nbgrader/traitlets setting, so ``nbgrader autograde``, the formgrader and
``python -m torchsteps grade`` all use it; a course may override any of them after the call. What each
step changes from stock nbgrader is listed in the README ("Deliberate differences from stock nbgrader").
"""

from __future__ import annotations

from traitlets.config import Config

__all__ = ["harden"]


def harden(c: Config) -> Config:
    """Configure ``c`` (the ``get_config()`` of an ``nbgrader_config.py``) for hardened grading; returns ``c``."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
    from nbconvert.preprocessors.sanitize import SanitizeHTML
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        ClearOutput,
        GetGrades,
        IgnorePattern,
        LimitOutput,
        OverwriteCells,
        OverwriteKernelspec,
    )

    from .execute import GuardedExecute
    from .export import ExerciseCsvExport
    from .feedback import FeedbackExporter, HideGradingPaths, SafeMarkdown2HTML
    from .preprocessors import (
        CheckCellMetadataCompiled,
        DeduplicateGradeIds,
        HideHiddenTests,
        RestoreCellMetadata,
        SaveAutoGradesKeepingManual,
        StderrIsNotFailure,
    )
    from .tamper import FlagTampering

    # Reading the submission: upstream's order, with two fixes: a duplicated graded cell no longer stops
    # the submission (jupyter/nbgrader#1083), and flags a student changed on a graded or task cell are
    # reset from the gradebook before OverwriteCells (which otherwise fails with "Inconsistent checksums").
    # CheckCellMetadataCompiled: stock's checks, with nbgrader's JSON schema checked once per process.
    c.Autograde.sanitize_preprocessors = [
        ClearOutput,
        DeduplicateGradeIds,
        OverwriteKernelspec,
        RestoreCellMetadata,
        OverwriteCells,
        CheckCellMetadataCompiled,
    ]
    # Executing student code: GuardedExecute starts every kernel in the sandbox
    # (torchsteps.sandbox.SandboxedKernelManager) with the assignment's handed-out files (release/)
    # as its working folder. StderrIsNotFailure: a warning from correct code costs no points.
    # FlagTampering marks submissions that patch what the tests rely on for manual review. A cell graded by
    # hand in the formgrader is never reopened by a later autograde (SaveAutoGradesKeepingManual).
    c.Autograde.autograde_preprocessors = [
        GuardedExecute,
        StderrIsNotFailure,
        IgnorePattern,
        ClearMetadataPreprocessor,
        LimitOutput,
        SaveAutoGradesKeepingManual,
        FlagTampering,
        AssignLatePenalties,
        CheckCellMetadataCompiled,
    ]
    # nbconvert validates the whole notebook after every preprocessor (about 25 times per autograded notebook,
    # 0.04 s of CPU); its own setting validates once, after the last one. An invalid notebook is still
    # refused, and nbformat validates again when the result is written; only the error no longer names the
    # preprocessor that broke it.
    c.Exporter.optimistic_validation = True
    # nbgrader's default for Python kernels, plus a quieter kernel log (no TCP-transport warning per kernel).
    c.GuardedExecute.extra_arguments = ["--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=ERROR"]
    c.GuardedExecute.interrupt_on_timeout = True
    # A deleted test cell is put back from the gradebook and scores 0, instead of leaving the
    # submission waiting for a manual grade.
    c.OverwriteCells.add_missing_cells = True
    # Upstream feedback shows hidden tests (jupyter/nbgrader#917); HideHiddenTests removes them.
    # HideGradingPaths: tracebacks and printed text lose the grading machine's paths (issue 11).
    c.GenerateFeedback.preprocessors = [HideHiddenTests, HideGradingPaths, GetGrades, CSSHTMLHeaderPreprocessor]
    # nbconvert's HTMLExporter and template, without a second parse of every page (profiling: about 40 % of a
    # notebook's feedback time) and with the templates compiled once per grading process; the page carries
    # a Content-Security-Policy with no script and no request (issue 11).
    c.GenerateFeedback.exporter_class = FeedbackExporter
    # Student HTML is inert wherever it is shown (feedback, the formgrader's submission view): nbconvert
    # escapes student markup in markdown cells and HTML/markdown outputs and drops script outputs
    # (JavaScript, SVG) before any HTML exporter renders them; the formgrader's exporter reads this too.
    c.HTMLExporter.preprocessors = [SanitizeHTML]
    c.HTMLExporter.sanitize_html = True
    # Markdown links and images to javascript: and other harmful protocols become "#harmful-link"
    # (nbconvert lets them through; the formgrader's pages have no Content-Security-Policy).
    c.HTMLExporter.filters = {"markdown2html": SafeMarkdown2HTML}
    # `nbgrader export`: stock CsvExportPlugin's columns, then one column per graded cell and the status.
    c.ExportApp.plugin_class = ExerciseCsvExport
    return c
