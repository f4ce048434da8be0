"""The feedback's HTML exporter: nbconvert's ``HTMLExporter``, the same page, rendered in less time.

``nbgrader generate_feedback`` renders each notebook with nbconvert's ``HTMLExporter`` (nbgrader's
``feedback`` template). Profiling a grading process (``python -m torchsteps.profiling``) showed where a
notebook's feedback time goes: about 40 % in ``HTMLExporter.from_notebook_node``'s last step, which
parses the whole rendered page again with BeautifulSoup's pure-Python ``html.parser`` only to add three
accessibility attributes (``alt`` on images that have none; ``tabindex="0"`` on cell inputs and outputs)
and prints it back; and about 6 % compiling the Jinja templates again for every student (nbgrader makes
a new exporter per ``generate_feedback`` call). :class:`FeedbackHTMLExporter` keeps the template,
filters and output of ``HTMLExporter`` (nbconvert 7.17) and changes only these two things:

- the same three attributes are added by one regular-expression pass over the tags, skipping the
  insides of ``<script>``, ``<style>`` and comments as an HTML parser would; the result, printed by
  BeautifulSoup, is the stock page (``tests/test_feedback_exporter.py``). One approximation: a
  ``tabindex`` goes on the matching ``<div>``s that come after an element of class ``jp-Notebook``,
  where nbconvert takes those inside one (the same thing for nbconvert's and nbgrader's templates);
- compiled templates are kept for the life of the process (Jinja's ``BytecodeCache``, keyed by the
  template's name and a checksum of its source, so an edited template is compiled again);
- the two costliest filters, ``highlight_code`` (Pygments, about 0.2 s per notebook) and ``markdown2html`` (mistune), remember their results for the life of the process, keyed
  by everything they read (source, language, cell metadata, attachments, options): a class's lesson,
  setup and test cells are the same in every student's notebook, so only answer cells are rendered
  again. The page is the same (``tests/unit/test_feedback_exporter.py``).

Issue 11 adds what a student's feedback page may contain: no grading-machine paths, no live student HTML.

- :class:`HideGradingPaths` (a preprocessor of ``GenerateFeedback``): every path of the grading machine
  that a traceback or printed text can reveal (the Python environment, the interpreter it was made
  from, the course folder, the sandbox's runtime folder) is replaced by a placeholder such as
  ``<python>``. A failed ``!pip install`` prints pip's traceback, full of them.
- :class:`FeedbackExporter`: :class:`FeedbackHTMLExporter` with nbgrader's feedback template wrapped to
  carry a Content-Security-Policy that allows no script and no request (``FEEDBACK_CSP``) and
  nbconvert's ``sanitize_html`` on. ``nbconvert.preprocessors.SanitizeHTML`` (set for every HTML
  exporter, the formgrader's too, in ``hardening.py``) escapes student markup in markdown cells and
  outputs first.

Set in ``hardening.py`` as ``c.GenerateFeedback.exporter_class``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import pass_context as contextfilter
from mistune.util import escape as escape_text
from mistune.util import striptags
from nbconvert.exporters import HTMLExporter
from nbconvert.exporters.templateexporter import TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, List, Unicode
from traitlets.config import Config, Configurable

__all__ = ["FeedbackHTMLExporter", "SafeMarkdown2HTML", "add_accessibility_attributes", "FeedbackExporter", "HideGradingPaths", "FEEDBACK_CSP", "grading_paths"]

# The text nbconvert's HTMLExporter gives images without one (nbconvert/exporters/html.py).
MISSING_ALT = "No description has been provided for this image"
_FOCUSABLE = ("jp-Cell-inputWrapper", "jp-OutputArea-output")

_ATTRS = r"""(?P<attrs>(?:[^>"']|"[^"]*"|'[^']*')*)"""
_TAGS = re.compile(
    r"(?P<skip><script\b.*?</script\s*>|<style\b.*?</style\s*>|<!--.*?-->)"
    rf"|<(?P<name>[A-Za-z][\w:-]*){_ATTRS}>",
    re.IGNORECASE | re.DOTALL,
)
_ATTR = re.compile(r"""(?:^|\s)(?P<key>[^\s=/>"']+)(?:\s*=\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s>]+)))?""")


def _attributes(text: str) -> dict[str, str | None]:
    found = {}
    for match in _ATTR.finditer(text):
        value = match.group("dq") if match.group("dq") is not None else match.group("sq") if match.group("sq") is not None else match.group("bare")
        found.setdefault(match.group("key").lower(), value)
    return found


def _append(attrs: str, addition: str) -> str:
    """``attrs`` with ``addition`` after the last attribute (before a closing ``/``), as BeautifulSoup prints it."""
    body = attrs.rstrip()
    closing = ""
    if body.endswith("/"):
        body, closing = body[:-1].rstrip(), "/"
    return f"{body} {addition}{closing}"


def _edit(match: re.Match, state: dict) -> str:
    if match.group("skip"):
        return match.group(0)
    name, attrs = match.group("name"), match.group("attrs")
    lower = name.lower()
    if lower not in ("img", "div") and state["inside"]:
        return match.group(0)
    found = _attributes(attrs)
    classes = (found.get("class") or "").split()
    if lower == "img":
        if "alt" not in found:
            return f"<{name}{_append(attrs, f'alt={chr(34)}{MISSING_ALT}{chr(34)}')}>"
        return match.group(0)
    if not state["inside"]:
        # nbconvert selects ".jp-Notebook div.<class>": only what follows an element of class jp-Notebook
        # (the lab template's <body>; nbgrader's feedback template has none, so nothing gets a tabindex).
        state["inside"] = "jp-Notebook" in classes
        return match.group(0)
    if lower != "div" or not any(c in classes for c in _FOCUSABLE):
        return match.group(0)
    if "tabindex" in found:  # BeautifulSoup replaces the value where the attribute stands
        replaced = re.sub(r"""((?:^|\s)tabindex)(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?""", r'\1="0"', attrs, count=1, flags=re.IGNORECASE)
        return f"<{name}{replaced}>"
    return f'<{name}{_append(attrs, "tabindex=" + chr(34) + "0" + chr(34))}>'


def add_accessibility_attributes(html: str) -> str:
    """What ``HTMLExporter.from_notebook_node`` adds after rendering, without parsing the page again.

    ``alt="No description has been provided for this image"`` on every ``<img>`` without ``alt``;
    ``tabindex="0"`` on every ``<div>`` of class ``jp-Cell-inputWrapper`` or ``jp-OutputArea-output``
    after an element of class ``jp-Notebook`` (nbconvert: inside one; the templates put it on ``<body>``).
    """
    state = {"inside": False}
    return _TAGS.sub(lambda match: _edit(match, state), html)


class _ProcessBytecodeCache(jinja2.BytecodeCache):
    """Compiled templates kept in memory for the life of the process (Jinja checks each source's checksum)."""

    def __init__(self):
        self._store: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        data = self._store.get(bucket.key)
        if data is not None:
            bucket.bytecode_from_string(data)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._store[bucket.key] = bucket.bytecode_to_string()


_BYTECODE_CACHE = _ProcessBytecodeCache()


class _RenderCache:
    """Results of a pure rendering function, per key, for the life of the process (at most ``size``)."""

    def __init__(self, size: int = 20_000):
        self.size, self._store = size, {}

    def get(self, key, render):
        try:
            return self._store[key]
        except KeyError:
            pass
        value = render()
        if len(self._store) >= self.size:
            self._store.clear()  # a new course's cells; rare, and cheaper than tracking use
        self._store[key] = value
        return value


_RENDERED = _RenderCache()


def _key(value) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


class _RememberedHighlight:
    """nbconvert's ``Highlight2HTML`` filter with its results remembered (:class:`_RenderCache`)."""

    def __init__(self, highlight):
        self._highlight = highlight

    def __call__(self, source, language=None, metadata=None):
        h = self._highlight
        key = ("highlight", getattr(h, "pygments_lexer", None), _key(getattr(h, "extra_formatter_options", None)),
               source, language, _key(metadata))
        return _RENDERED.get(key, lambda: h(source, language, metadata))


# A URL the browser would fetch from another machine: any scheme (http:, https:, ftp:, and http:host, which a
# page served over https resolves to http://host) or a host of its own ("//host", "\\host"); data: and
# attachment: stay, as do relative paths (the formgrader's own server).
_REMOTE_URL = re.compile(r"^(?!data:|attachment:)([a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


class _LocalImagesRenderer(IPythonRenderer):
    """nbconvert's renderer with a remote image in a student's markdown (``![](https://host/pixel.png)``)
    shown as a link, not loaded: loading it would tell the student's server when, and from which address,
    the instructor opened the submission (a tracking pixel). Feedback pages block it anyway (their CSP).
    ``remote_images``: load them after all, for a cell whose source is the instructor's (a locked cell,
    restored from the gradebook by nbgrader's ``OverwriteCells``). An image of a missing attachment is named
    as text: nbconvert raises ``InvalidNotebook`` for it, so one student could stop the formgrader's view of
    their notebook and their own feedback."""

    def __init__(self, *args, remote_images: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.remote_images = remote_images

    def image(self, text: str, url: str, title: str | None = None) -> str:
        bare = "".join(ch for ch in url if ch > " ").replace("\\", "/")  # as a browser reads it
        name = bare[len("attachment:"):]
        if bare.startswith("attachment:") and not (isinstance((self.attachments or {}).get(name), dict)
                                                   and (self.attachments or {}).get(name)):
            return f"[missing attachment: {escape_text(name)}]"  # absent or empty: nbconvert raises for both
        if _REMOTE_URL.match(bare) and not self.remote_images:
            attrs = {"href": self.sanitize_url(url), "rel": "noreferrer", "title": title or None}
            return f"<a{self.render_attrs(attrs)}>[remote image: {striptags(text) or 'no description'}]</a>"
        return super().image(text, url, title)


@contextfilter  # on the class: Jinja reads `jinja_pass_arg` from the instance nbconvert registers, and passes the context
class SafeMarkdown2HTML(Configurable):
    """nbconvert's ``markdown2html`` filter (``HTMLExporter.markdown2html``) with links and images to
    harmful protocols (``javascript:``, ``vbscript:``, ``data:text/html``...) rendered as
    ``#harmful-link``, as mistune does by default; nbconvert allows them, so ``[x](javascript:...)`` in a
    student's markdown was a live link in the formgrader, whose pages have no Content-Security-Policy.
    A remote image is shown as a link (:class:`_LocalImagesRenderer`).
    Attached images (``data:image/...``, SVG included: an ``<img>`` runs no script) stay as they are.

    Set for every HTML exporter in ``hardening.py`` (``c.HTMLExporter.filters``), so the formgrader's
    exporter uses it too; nbconvert makes one per exporter with the exporter as ``parent`` and reads its
    options (``embed_images``, ``anchor_link_text``...). Results are remembered per process (:class:`_RenderCache`).
    """

    ALLOWED_DATA = ("data:image/svg+xml;",)  # beside mistune's own safe list (http, mailto, data:image/png...)

    def __call__(self, context, source):
        exporter = self.parent
        options = {name: getattr(exporter, name, default) for name, default in
                   (("embed_images", False), ("anchor_link_text", "¶"), ("exclude_anchor_links", False))}
        lexer_options = getattr(exporter, "lexer_options", {})
        cell = context.get("cell", {})
        attachments = cell.get("attachments", {})
        path = context.get("resources", {}).get("metadata", {}).get("path", "")
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        # nbgrader.utils.is_locked: a locked or grade cell that is no solution, restored from the gradebook by
        # OverwriteCells at autograde, holds the instructor's source
        instructors = isinstance(meta, dict) and not meta.get("solution") and bool(meta.get("grade") or meta.get("locked"))

        def render():
            renderer = _LocalImagesRenderer(escape=False, allow_harmful_protocols=self.ALLOWED_DATA, attachments=attachments,
                                            path=path, remote_images=instructors, **options, **lexer_options)
            return MarkdownWithMath(renderer=renderer).render(source)

        key = ("safe-markdown", source, _key(attachments), path, instructors, _key(options), _key(lexer_options))
        return _RENDERED.get(key, render)


class FeedbackHTMLExporter(HTMLExporter):
    """``HTMLExporter`` without the second parse of the page, with templates compiled once per process and
    highlighted code and rendered markdown remembered per process."""

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = _BYTECODE_CACHE
        return environment

    def default_filters(self):
        yield from super().default_filters()
        yield ("markdown2html", SafeMarkdown2HTML)  # even where hardening.py's config is not loaded

    def from_notebook_node(self, nb, resources: dict[str, Any] | None = None, **kw: Any):
        # HTMLExporter.from_notebook_node of nbconvert 7.17 up to the rendering, then the same edits.
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        highlight_code = self.filters.get("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self))
        resources = self._init_resources(resources)
        filter_data_type = WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata, parent=self, resources=resources)
        self.register_filter("highlight_code", _RememberedHighlight(highlight_code))
        self.register_filter("filter_data_type", filter_data_type)
        html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        return add_accessibility_attributes(html), resources


# --- issue 11: no grading paths, no live student HTML ----------------------------------------

FEEDBACK_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "base-uri 'none'; form-action 'none'"
)
TEMPLATES = Path(__file__).with_name("templates")


def grading_paths(course_root: str | None = None, runtime_dir: str | None = None) -> list[tuple[str, str]]:
    """``(path, placeholder)`` pairs, longest path first, for the folders of this grading machine.

    ``runtime_dir`` is the sandboxes' folder (``SandboxedKernelManager.runtime_dir``; its default when None),
    hidden as an absolute path and as it resolves.
    """
    if runtime_dir is None:
        from ..sandbox.kernel_manager import SandboxedKernelManager

        runtime_dir = SandboxedKernelManager.runtime_dir.default_value
    pairs: dict[str, str] = {}
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.dirname(sys.executable))):
        for form in (prefix, os.path.realpath(prefix)):
            if form not in ("/", "/usr"):
                pairs[form] = "<python>"
    if course_root:
        pairs[os.path.abspath(course_root)] = "<course>"
        pairs[os.path.realpath(course_root)] = "<course>"
    # Absolute forms only: a relative one ("run") would also match inside ordinary words ("running").
    for form in (os.path.abspath(runtime_dir), os.path.realpath(runtime_dir)):
        if form != "/":
            pairs[form] = "<sandbox>"
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
        # The folder the sandboxes were made in, as nbgrader_config.py set it (not only the default).
        runtime_dir = self.config.get("SandboxedKernelManager", {}).get("runtime_dir") or None
        named = dict(grading_paths(root or os.getcwd(), runtime_dir))
        # an extra path that is also one of those keeps its name (the course folder reads <course>)
        pairs = sorted({**{p: "<hidden>" for p in self.extra_paths if p}, **named}.items(), key=lambda kv: -len(kv[0]))
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


class FeedbackExporter(FeedbackHTMLExporter):
    """nbgrader's feedback HTML (fast exporter above), sanitized, with ``FEEDBACK_CSP`` in its ``<head>``."""

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
