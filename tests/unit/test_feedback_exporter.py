"""FeedbackHTMLExporter gives the page nbconvert's HTMLExporter gives (fast: no kernel, no grading).

Both exporters render the same notebooks with the configuration ``nbgrader generate_feedback`` uses
(nbgrader's ``feedback`` template); the stock page is BeautifulSoup's print of the rendered page, so ours,
printed by BeautifulSoup, must be the same string. The notebooks carry what the accessibility pass
touches: images with and without ``alt`` (markdown, PNG output, student HTML output, an ``alt`` hidden in
another attribute's value, ``>`` inside a quoted value, a self-closing tag), ``<img`` inside a script, a
style and a comment (left alone), student HTML that copies the classes of cell outputs, a ``tabindex``
already set.
"""

from __future__ import annotations

import base64

import nbformat
import pytest
from bs4 import BeautifulSoup
from nbconvert.exporters import HTMLExporter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbgrader.converters import GenerateFeedback
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config

from conftest import ASSIGNMENT, REPO
from torchsteps.nbgrader_plugins.feedback import MISSING_ALT, FeedbackHTMLExporter, add_accessibility_attributes

PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)).decode()

STUDENT_HTML = (
    '<div class="x jp-OutputArea-output">copied class</div>'
    '<div class="jp-Cell-inputWrapper" tabindex="-1">tab set</div>'
    "<img src='a.png'><img src=\"b.png\" alt=\"\"><img src=\"c>d.png\"/>"
    '<img data-alt="x" title=\'alt="no"\' src="e.png">'
    '<script>var s = "<img src=x>";</script><style>/* <img src=y> */</style><!-- <img src=z> -->'
    "<IMG SRC='upper.png'>"
)


def _feedback_config() -> Config:
    """The HTMLExporter configuration ``nbgrader generate_feedback`` runs with."""
    return GenerateFeedback(coursedir=CourseDirectory(), config=Config()).config


def _resources() -> dict:
    """What nbgrader's GetGrades puts in the resources for the feedback template."""
    return {"nbgrader": {"notebook": "02_creating_tensors", "score": 3.0, "max_score": 5.0, "late_penalty": 0}}


def _notebooks() -> list[nbformat.NotebookNode]:
    made = new_notebook(cells=[
        new_markdown_cell("An image: ![a plot](plot.png) and <img src='raw.png'> and `<img src=code>`."),
        new_code_cell("display(...)", outputs=[
            new_output("display_data", data={"text/html": STUDENT_HTML, "text/plain": "html"}),
            new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
            new_output("stream", name="stdout", text="<img src=printed> is text\n"),
            new_output("error", ename="AssertionError", evalue="dtype <img>", traceback=["AssertionError: dtype"]),
        ]),
    ], metadata={"language_info": {"name": "python"}})
    source = nbformat.read(str(REPO / "source" / ASSIGNMENT / "02_creating_tensors.ipynb"), as_version=4)
    for cell in source.cells:  # as GetGrades leaves them
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.metadata.nbgrader["score"] = cell.metadata.nbgrader["points"]
    return [made, source]


@pytest.mark.parametrize("index", [0, 1], ids=["outputs", "source-notebook"])
def test_the_page_is_the_stock_exporters(index):
    nb = _notebooks()[index]
    config = _feedback_config()
    stock, _ = HTMLExporter(config=config).from_notebook_node(nb, _resources())
    ours, _ = FeedbackHTMLExporter(config=config).from_notebook_node(nb, _resources())
    assert "feedback" in config.HTMLExporter.template_name
    assert str(BeautifulSoup(ours, features="html.parser")) == stock
    if index == 0:
        assert stock.count(MISSING_ALT) >= 4  # the test exercises the pass, it does not compare two no-ops



def test_the_lab_templates_focusable_cells_get_a_tabindex():
    """nbconvert's lab template (body class jp-Notebook): inputs and outputs become focusable, as stock."""
    nb = _notebooks()[0]
    stock, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    ours, _ = FeedbackHTMLExporter(template_name="lab").from_notebook_node(nb)
    assert 'tabindex="0"' in stock
    assert str(BeautifulSoup(ours, features="html.parser")) == stock


def test_second_render_reuses_the_compiled_templates():
    nb = _notebooks()[0]
    config = _feedback_config()
    first, _ = FeedbackHTMLExporter(config=config).from_notebook_node(nb, _resources())
    exporter = FeedbackHTMLExporter(config=config)
    again, _ = exporter.from_notebook_node(nb, _resources())
    assert again == first
    assert exporter.environment.bytecode_cache is not None


def test_skipped_regions_and_attribute_forms():
    html = ('<div class="jp-OutputArea-output"><body class="a jp-Notebook"><script>"<img src=a>"</script>'
            '<img src="b" ALT="x"><img src=c /><div class=\'jp-OutputArea-output\'><div class="jp-Notebook">')
    assert add_accessibility_attributes(html) == (
        '<div class="jp-OutputArea-output"><body class="a jp-Notebook"><script>"<img src=a>"</script><img src="b" ALT="x">'
        f'<img src=c alt="{MISSING_ALT}"/><div class=\'jp-OutputArea-output\' tabindex="0"><div class="jp-Notebook">'
    )


def test_the_course_uses_it_for_feedback():
    from torchsteps.grading.course import load_config

    from torchsteps.nbgrader_plugins.feedback import FeedbackExporter

    # FeedbackExporter (issue 11: CSP, sanitized) is this exporter with nbgrader's template wrapped.
    assert load_config(REPO).GenerateFeedback.exporter_class is FeedbackExporter
    assert issubclass(FeedbackExporter, FeedbackHTMLExporter)


def test_remembered_renders_are_the_stock_page_and_skip_pygments_the_second_time(monkeypatch):
    import nbconvert.filters.highlight as highlight

    nb = _notebooks()[1]
    config = _feedback_config()
    stock, _ = HTMLExporter(config=config).from_notebook_node(nb, _resources())
    FeedbackHTMLExporter(config=config).from_notebook_node(nb, _resources())
    calls = []
    original = highlight._pygments_highlight
    monkeypatch.setattr(highlight, "_pygments_highlight", lambda *a, **k: calls.append(a) or original(*a, **k))
    again, _ = FeedbackHTMLExporter(config=config).from_notebook_node(nb, _resources())
    assert str(BeautifulSoup(again, features="html.parser")) == stock
    assert calls == [], "every code cell of the same notebook was highlighted the first time"
    # A changed answer cell is rendered again; the other cells still come from the first render.
    changed = nbformat.from_dict(nb)
    answer = next(c for c in changed.cells if c.metadata.get("nbgrader", {}).get("solution"))
    answer.source += "\nprint('a different answer')"
    stock_changed, _ = HTMLExporter(config=config).from_notebook_node(changed, _resources())
    calls.clear()
    ours_changed, _ = FeedbackHTMLExporter(config=config).from_notebook_node(changed, _resources())
    assert str(BeautifulSoup(ours_changed, features="html.parser")) == stock_changed
    assert len(calls) == 1


def test_what_a_filter_reads_besides_the_source_is_part_of_the_key():
    """Same markdown with another attachment, same code in another language: never the remembered page."""
    config = _feedback_config()
    png_red = PNG
    png_other = base64.b64encode(base64.b64decode(PNG)[:-4] + b"\x00\x00\x00\x00").decode()
    pages = []
    for png, language in ((png_red, "python"), (png_other, "python"), (png_red, "r")):
        cell = new_markdown_cell("![pic](attachment:pic.png)")
        cell.attachments = {"pic.png": {"image/png": png}}
        code = new_code_cell("x <- 1")
        code.metadata["magics_language"] = language
        nb = new_notebook(cells=[cell, code], metadata={"language_info": {"name": language}})
        stock, _ = HTMLExporter(config=config).from_notebook_node(nb, _resources())
        ours, _ = FeedbackHTMLExporter(config=config).from_notebook_node(nb, _resources())
        assert str(BeautifulSoup(ours, features="html.parser")) == stock
        pages.append(ours)
    assert len(set(pages)) == 3


def test_feedback_hides_the_configured_sandbox_folder_not_only_the_default(tmp_path):
    # Review (left open before): only /var/tmp/torchsteps was hidden; a course that set its own
    # SandboxedKernelManager.runtime_dir showed that folder (and the path to it) in tracebacks.
    from torchsteps.nbgrader_plugins.feedback import HideGradingPaths

    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    config = Config()
    config.SandboxedKernelManager.runtime_dir = str(tmp_path / "link")
    cell = new_code_cell("1/0", outputs=[
        new_output("error", ename="E", evalue=f"in {tmp_path / 'link'}/torchsteps-kernel-1",
                   traceback=[f"File {real}/torchsteps-kernel-1/work/a.py"]),
    ])
    nb, _ = HideGradingPaths(config=config).preprocess(new_notebook(cells=[cell]), {"nbgrader": {"course_root": str(REPO)}})
    (error,) = nb.cells[0].outputs
    assert error.evalue == "in <sandbox>/torchsteps-kernel-1"
    assert error.traceback == ["File <sandbox>/torchsteps-kernel-1/work/a.py"]
    nb, _ = HideGradingPaths().preprocess(new_notebook(cells=[new_code_cell("", outputs=[
        new_output("stream", name="stdout", text="/var/tmp/torchsteps/x\n")])]), {})
    assert nb.cells[0].outputs[0].text == "<sandbox>/x\n"


HARMFUL_MARKDOWN = "\n\n".join([
    "[plain](javascript:alert(1))", "[cased](JaVaScRiPt:alert(2))", "[entity](jav&#x61;script:alert(3))",
    "[spaced]( javascript:alert(4))", "[ref][r]\n\n[r]: javascript:alert(5)", "<javascript:alert(6)>",
    "[vb](vbscript:msgbox(7))", "[page](data:text/html;base64,PHNjcmlwdD5hbGVydCg4KTwvc2NyaXB0Pg==)",
    "![img](javascript:alert(9))", "[fine](https://pytorch.org/docs) [relative](notes.md) [anchor](#top)",
    "![png](attachment:p.png) ![svg](attachment:s.svg)",
])


def _exporter_and_resources(who: str):
    """The formgrader's exporter as nbgrader makes it (formgrader.py) with what its SubmissionHandler passes, or
    the course's feedback exporter with GetGrades' resources."""
    from nbgrader.server_extensions.formgrader import handlers

    from torchsteps.grading.course import load_config
    from torchsteps.nbgrader_plugins.feedback import FeedbackExporter

    config = load_config(REPO)
    if who == "feedback":
        return FeedbackExporter(config=config), _resources()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    return HTMLExporter(config=config), {
        "assignment_id": ASSIGNMENT, "notebook_id": "02_creating_tensors", "submission_id": "s1", "index": 0, "total": 1,
        "base_url": "", "student": "ada", "last_name": "", "first_name": "", "notebook_path": "/x.ipynb"}


@pytest.mark.parametrize("who", ["formgrader", "feedback"])
def test_links_to_harmful_protocols_in_student_markdown_are_dead(who):
    # Review: [x](javascript:alert(1)) in a markdown cell was a live link in the formgrader (no CSP there).
    exporter, resources = _exporter_and_resources(who)
    svg = base64.b64encode(b"<svg xmlns='http://www.w3.org/2000/svg'/>").decode()
    cell = new_markdown_cell(HARMFUL_MARKDOWN, attachments={"p.png": {"image/png": PNG}, "s.svg": {"image/svg+xml": svg}})
    body, _ = exporter.from_notebook_node(new_notebook(cells=[cell]), resources=resources)
    hrefs = [a.get("href") for a in BeautifulSoup(body, "html.parser").find_all("a")]
    srcs = [img.get("src") for img in BeautifulSoup(body, "html.parser").find_all("img")]
    assert not [u for u in hrefs + srcs if u and ("script:" in u.lower() or u.lower().startswith("data:text"))], hrefs + srcs
    # 8: the autolink <javascript:...> is no link at all (SanitizeHTML escapes it as a tag first); the image
    # to javascript: is a dead link, not an image (any image with a scheme is shown as a link)
    assert hrefs.count("#harmful-link") == 8 and "javascript:alert(6)" in body, (hrefs, body)
    assert {"https://pytorch.org/docs", "notes.md", "#top"} <= set(hrefs)
    assert srcs == [f"data:image/png;base64,{PNG}", f"data:image/svg+xml;base64,{svg}"], srcs


REMOTE_IMAGES = "\n\n".join([
    "![https](https://evil.example/1.png)", "![cased](HTTP://evil.example/2.png)", "![bare](http:evil.example/3.png)",
    "![host](//evil.example/4.png)", "![spaced]( https://evil.example/5.png)", '![titled](https://evil.example/6.png "t")',
    "![ref][px]\n\n[px]: https://evil.example/7.png", "![ftp](ftp://evil.example/8.png)",
    "![local](plot.png) ![png](attachment:p.png)",
])


@pytest.mark.parametrize("who", ["formgrader", "feedback"])
def test_remote_images_in_student_markdown_are_links_not_loaded(who):
    # Review (LOW): ![](https://host/pixel.png) loaded in the formgrader (no CSP there), telling the student's
    # server when and from where the instructor looked.
    exporter, resources = _exporter_and_resources(who)
    cell = new_markdown_cell(REMOTE_IMAGES, attachments={"p.png": {"image/png": PNG}})
    body, _ = exporter.from_notebook_node(new_notebook(cells=[cell]), resources=resources)
    soup = BeautifulSoup(body, "html.parser")
    assert [img.get("src") for img in soup.find_all("img")] == ["plot.png", f"data:image/png;base64,{PNG}"]
    links = {a.get_text(): a.get("href") for a in soup.find_all("a") if "evil.example" in (a.get("href") or "")}
    assert len(links) == 8 and all(text.startswith("[remote image: ") for text in links), links
    assert links["[remote image: titled]"] == "https://evil.example/6.png"


def test_an_extra_path_that_is_the_course_folder_keeps_its_name(tmp_path):
    # Review: nbgrader_config.py lists the course folder in extra_paths too, and it read <hidden>.
    from torchsteps.nbgrader_plugins.feedback import HideGradingPaths

    config = Config()
    config.HideGradingPaths.extra_paths = [str(tmp_path), "/srv/elsewhere", ""]
    cell = new_code_cell("", outputs=[new_output("stream", name="stdout", text=f"{tmp_path}/a.py /srv/elsewhere/b x\n")])
    nb, _ = HideGradingPaths(config=config).preprocess(new_notebook(cells=[cell]), {"nbgrader": {"course_root": str(tmp_path)}})
    assert nb.cells[0].outputs[0].text == "<course>/a.py <hidden>/b x\n"


def test_a_relative_sandbox_folder_is_hidden_only_as_a_path(tmp_path, monkeypatch):
    # Review: runtime_dir = "run" was also hidden as written, so "running ... runs" became "<sandbox>ning ... <sandbox>s".
    from torchsteps.nbgrader_plugins.feedback import HideGradingPaths

    monkeypatch.chdir(tmp_path)
    config = Config()
    config.SandboxedKernelManager.runtime_dir = "run"
    text = f"running the model: 3 runs done in {tmp_path}/run/torchsteps-kernel-1\n"
    cell = new_code_cell("", outputs=[new_output("stream", name="stdout", text=text)])
    nb, _ = HideGradingPaths(config=config).preprocess(new_notebook(cells=[cell]), {})
    assert nb.cells[0].outputs[0].text == "running the model: 3 runs done in <sandbox>/torchsteps-kernel-1\n"


@pytest.mark.parametrize("who", ["formgrader", "feedback"])
def test_a_locked_cell_keeps_its_remote_images_and_a_missing_attachment_is_named(who):
    # A locked cell's source is the instructor's (nbgrader's OverwriteCells restores it at autograde): its remote
    # diagrams load as before. A missing attachment raised nbconvert's InvalidNotebook, which stopped the
    # formgrader's view of that notebook and the student's feedback.
    exporter, resources = _exporter_and_resources(who)
    lesson = new_markdown_cell("![diagram](https://pytorch.org/tensor.png)", metadata={"nbgrader": {
        "grade_id": "lesson", "locked": True, "solution": False, "grade": False, "schema_version": 3}})
    student = new_markdown_cell("![diagram](https://pytorch.org/tensor.png) ![gone](attachment:gone.png)")
    body, _ = exporter.from_notebook_node(new_notebook(cells=[lesson, student]), resources=resources)
    soup = BeautifulSoup(body, "html.parser")
    assert [img.get("src") for img in soup.find_all("img")] == ["https://pytorch.org/tensor.png"]
    assert "[remote image: diagram]" in soup.get_text() and "[missing attachment: gone.png]" in soup.get_text()


def test_an_empty_attachment_is_named_not_a_crash():
    # Review: {"attachments": {"a": {}}} passes nbformat's validation, and nbconvert raised StopIteration for it.
    exporter, resources = _exporter_and_resources("formgrader")
    cell = new_markdown_cell("![x](attachment:a)", attachments={"a": {}})
    body, _ = exporter.from_notebook_node(new_notebook(cells=[cell]), resources=resources)
    assert "[missing attachment: a]" in BeautifulSoup(body, "html.parser").get_text()
