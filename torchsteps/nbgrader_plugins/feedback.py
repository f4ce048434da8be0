"""What a student's feedback page may contain (issue 11): no grading-machine paths, no live student HTML.

- :class:`HideGradingPaths` (a preprocessor of ``GenerateFeedback``): every path of the grading machine
  that a traceback or printed text can reveal (the Python environment, the interpreter it was made
  from, the course folder, the sandbox's runtime folder) is replaced by a placeholder such as
  ``<python>``. A failed ``!pip install`` prints pip's traceback, full of them.
- :class:`FeedbackExporter` (``c.GenerateFeedback.exporter_class``): nbgrader's feedback template with
  nbconvert's ``sanitize_html`` on and a Content-Security-Policy that allows no script and no request
  (``FEEDBACK_CSP``). ``nbconvert.preprocessors.SanitizeHTML`` (configured in ``nbgrader_config.py`` for
  every HTML exporter, the formgrader's too) escapes student markup in markdown cells and outputs first.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from nbconvert.exporters import HTMLExporter
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, List, Unicode
from traitlets.config import Config

__all__ = ["HideGradingPaths", "FeedbackExporter", "FEEDBACK_CSP", "grading_paths"]

FEEDBACK_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "base-uri 'none'; form-action 'none'"
)
TEMPLATES = Path(__file__).with_name("templates")


def grading_paths(course_root: str | None = None, runtime_dir: str = "/var/tmp/torchsteps") -> list[tuple[str, str]]:
    """``(path, placeholder)`` pairs, longest path first, for the folders of this grading machine."""
    pairs: dict[str, str] = {}
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.dirname(sys.executable))):
        for form in (prefix, os.path.realpath(prefix)):
            if form not in ("/", "/usr"):
                pairs[form] = "<python>"
    if course_root:
        pairs[os.path.abspath(course_root)] = "<course>"
        pairs[os.path.realpath(course_root)] = "<course>"
    pairs[runtime_dir] = "<sandbox>"
    home = os.path.expanduser("~")
    if home not in ("/", ""):
        pairs[home] = "<home>"
    return sorted(pairs.items(), key=lambda kv: -len(kv[0]))


class HideGradingPaths(Preprocessor):
    """Replaces grading-machine paths in every output (stream, error, text data) with placeholders."""

    enabled = Bool(True).tag(config=True)  # nbconvert's default is off; nbgrader registers it as it is
    extra_paths = List(Unicode(), help="more folders to hide, shown as <hidden>").tag(config=True)

    def preprocess(self, nb, resources):
        root = None
        try:
            root = resources["nbgrader"].get("course_root") or None
        except (KeyError, TypeError, AttributeError):
            pass
        pairs = grading_paths(root or os.getcwd()) + [(p, "<hidden>") for p in self.extra_paths]
        pairs.sort(key=lambda kv: -len(kv[0]))
        self._pattern = re.compile("|".join(re.escape(p) for p, _ in pairs))
        self._names = dict(pairs)
        return super().preprocess(nb, resources)

    def _hide(self, text):
        if isinstance(text, list):
            return [self._hide(t) for t in text]
        if not isinstance(text, str):
            return text
        return self._pattern.sub(lambda m: self._names[m.group(0)], text)

    def preprocess_cell(self, cell, resources, index):
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                output.text = self._hide(output.text)
            elif output.output_type == "error":
                output.evalue = self._hide(output.evalue)
                output.traceback = self._hide(output.traceback)
            else:
                for key, value in output.get("data", {}).items():
                    if key.startswith("text/"):
                        output.data[key] = self._hide(value)
        return cell, resources


class FeedbackExporter(HTMLExporter):
    """nbgrader's feedback HTML, sanitized, with ``FEEDBACK_CSP`` in its ``<head>``."""

    def __init__(self, *args, config=None, **kwargs):
        # Through config, in this class's own section: it outranks the HTMLExporter section that
        # nbgrader's GenerateFeedback fills (template "feedback"), and is read before the template is.
        config = Config(config) if config is not None else Config()
        formgrader = Path(__import__("nbgrader").__file__).parent / "server_extensions" / "formgrader"
        config.FeedbackExporter.template_name = "torchsteps_feedback"
        config.FeedbackExporter.extra_template_basedirs = [str(TEMPLATES), str(formgrader / "templates")]
        # Where `extends 'feedback/index.html.j2'` and nbgrader's bootstrap.min.css are found.
        config.FeedbackExporter.extra_template_paths = [
            str(formgrader / "templates"), str(formgrader / "static" / "node_modules" / "bootstrap" / "dist" / "css"),
        ]
        config.FeedbackExporter.sanitize_html = True
        super().__init__(*args, config=config, **kwargs)

    def from_notebook_node(self, nb, resources=None, **kw):
        resources = dict(resources or {}, torchsteps_csp=FEEDBACK_CSP)
        return super().from_notebook_node(nb, resources, **kw)
