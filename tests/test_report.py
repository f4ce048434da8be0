"""The class report (torchsteps.results.report): its numbers, its escaping, and how it renders in Chromium.

One small course is graded by the real CLI (`python -m torchsteps grade`) once for this module. To keep
kernel starts low, every submission holds only 04_devices (the other notebooks are missing and score 0
without running), so grading runs three notebooks:
- ada: the instructor's answers (full marks on 04_devices);
- ben: the untouched release (every test cell raises NotImplementedError);
- cleo: the instructor's answers, except pick_device, which raises a hostile message (HTML, a script,
  ANSI colour codes), and move_all, left blank;
- dev: a notebook that is not JSON, and stranger: not on the roster (both cannot be graded, no kernel).

The browser tests run Debian's Chromium headless (`apt-get install -y chromium`) with every network
request routed to nowhere; they are skipped only when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from conftest import ASSIGNMENT, REPO
from torchsteps.constants import is_test_cell
from torchsteps.grading.course import open_api
from torchsteps.authoring.demo_submissions import instructor_answers
from nbgrader.api import Gradebook

from torchsteps.grading.outputs import write_outputs
from torchsteps.results.export import collect_rows
from torchsteps.results.report import (
    NOT_SUBMITTED,
    REPORT_FILE,
    ReportData,
    collect_report_data,
    failure_message,
    item_rest_correlation,
    render_html,
)
from torchsteps.authoring.submissions import fill_solutions

NOTEBOOK = "04_devices"
CHROMIUM = Path("/usr/bin/chromium")
GRADE_TIMEOUT = 15 * 60
BROWSER_TIMEOUT = 120

# Raised by cleo's pick_device: markup, a script and ANSI codes, all of which must reach the page as text.
HOSTILE_VALUE = (
    "\x1b[31m<script>document.body.setAttribute('data-pwned','1')</script>\x1b[0m"
    " <img src=x onerror=\"document.body.setAttribute('data-pwned','2')\"> & done"
)
HOSTILE_MESSAGE = "ValueError: " + HOSTILE_VALUE.replace("\x1b[31m", "").replace("\x1b[0m", "")
HOSTILE_CODE = f"def pick_device():\n    raise ValueError({HOSTILE_VALUE!r})\n"
BLANK = "def move_all(*args, **kwargs):\n    raise NotImplementedError()\n"


def _points(nb) -> dict[str, float]:
    return {
        c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader["points"])
        for c in nb.cells
        if is_test_cell(c)
    }


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A course graded by `python -m torchsteps grade`, then its report written by write_outputs."""
    root = tmp_path_factory.mktemp("report") / "course"
    root.mkdir()
    for name in ("nbgrader_config.py", "students.csv"):  # the config and the roster
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "source", root / "source", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    # The release the students would get (no kernel needed); `grade` regenerates the same one.
    generated = open_api(root).generate_assignment(ASSIGNMENT, force=True)
    assert generated["success"], generated.get("log", "") + generated.get("error", "")
    release = nbformat.read(str(root / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    source = nbformat.read(str(root / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    solutions = instructor_answers(source)
    submissions = {
        "ada": fill_solutions(release, solutions),
        "ben": release,
        "cleo": fill_solutions(release, dict(solutions, pick_device=HOSTILE_CODE, move_all=BLANK)),
        "stranger": fill_solutions(release, solutions),
    }
    for student, nb in submissions.items():
        out = root / "submitted" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        out.parent.mkdir(parents=True)
        nbformat.write(nb, str(out))
    broken = root / "submitted" / "dev" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    broken.parent.mkdir(parents=True)
    broken.write_text("{ this is not JSON", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "torchsteps", "--course", str(root), "grade"],
        cwd=root, capture_output=True, text=True, timeout=GRADE_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    path = write_outputs(open_api(root), ASSIGNMENT).report_path
    assert path == root / REPORT_FILE and path.is_file()
    return root


@pytest.fixture(scope="module")
def data(course) -> ReportData:
    api = open_api(course)
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        columns, rows = collect_rows(gb, course, ASSIGNMENT)
    return collect_report_data(columns, rows, course_id=api.coursedir.course_id, assignment_id=ASSIGNMENT,
                               autograded_dir=course / api.coursedir.autograded_directory)


@pytest.fixture(scope="module")
def page(course) -> str:
    return (course / REPORT_FILE).read_text(encoding="utf-8")


# --- numbers from a graded course -------------------------------------------------------------------

def test_exercise_numbers(course, data):
    source = nbformat.read(str(course / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    points = _points(source)
    assert [r.student_id for r in data.graded] == ["ada", "ben", "cleo"]
    full = sum(points.values())
    cleo = full - points["test_pick_device"] - points["test_move_all"]
    assert data.totals == [full, 0.0, cleo]
    by_id = {e.column.grade_id: e for e in data.exercises if e.column.notebook == NOTEBOOK}
    assert set(by_id) == set(points)
    passed = {  # which of ada, ben, cleo pass each test cell
        "test_pick_device": (1, 0, 0),
        "test_make_on": (1, 0, 1),
        "test_move_all": (1, 0, 0),
        "test_add_on_device": (1, 0, 1),
        "test_to_numpy_any_device": (1, 0, 1),
    }
    for grade_id, marks in passed.items():
        e = by_id[grade_id]
        assert e.n == 3
        assert e.column.max_score == points[grade_id]
        assert e.mean_fraction == pytest.approx(sum(marks) / 3)
        assert e.mean_points == pytest.approx(sum(marks) * points[grade_id] / 3)
        assert e.full_marks == pytest.approx(sum(marks) / 3)
        assert e.failed == 3 - sum(marks)
        rest = [t - m * points[grade_id] for t, m in zip(data.totals, marks)]
        assert e.discrimination == pytest.approx(statistics.correlation([float(m) for m in marks], rest))
    # Notebooks nobody submitted: everyone scores 0, so no discrimination, and the reason is given.
    others = [e for e in data.exercises if e.column.notebook != NOTEBOOK]
    assert others
    for e in others:
        assert (e.mean_fraction, e.full_marks, e.discrimination, e.failures) == (0.0, 0.0, None, [(NOT_SUBMITTED, 3)])


def test_failure_messages_are_grouped_and_counted(data):
    by_id = {e.column.grade_id: e for e in data.exercises if e.column.notebook == NOTEBOOK}
    assert by_id["test_move_all"].failures == [("NotImplementedError", 2)]
    assert by_id["test_make_on"].failures == [("NotImplementedError", 1)]
    assert sorted(by_id["test_pick_device"].failures) == sorted([("NotImplementedError", 1), (HOSTILE_MESSAGE, 1)])


def test_ungraded_students_and_reasons(data):
    reasons = dict(data.ungraded)
    assert set(reasons) == {"dev", "stranger"}
    assert "not valid notebook JSON" in reasons["dev"] and f"{NOTEBOOK}.ipynb" in reasons["dev"]
    assert "not on the roster" in reasons["stranger"]
    assert "eli" in data.not_submitted and "ada" not in data.not_submitted


def test_the_page_is_reproducible_from_the_export_rows(data, page):
    assert render_html(data) == page, "the report page differs from one rendered from the same export rows"


# --- the HTML file ----------------------------------------------------------------------------------

class _Elements(HTMLParser):
    """Tag, attributes and text of the elements of a page (enough to find ids, classes and cells)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)

    def by_id(self, id_):
        return [attrs for _, attrs in self.elements if attrs.get("id") == id_]


def _parse(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    return parser


def test_page_is_self_contained_and_escapes_student_text(page):
    parsed = _parse(page)
    for id_ in ("exercises", "score-distribution", "exercise-means", "failures", "ungraded"):
        assert len(parsed.by_id(id_)) == 1, f"#{id_} missing or not unique"
    for tag, attrs in parsed.elements:
        for name in ("src", "href", "action", "poster", "data"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:image/png;base64,", "#")), f"<{tag} {name}={value[:80]!r}> refers outside the file"
    assert not re.search(r"https?://|url\(", page), "the page names an external resource"
    assert 'http-equiv="Content-Security-Policy"' in page and "default-src &#39;none&#39;" in page
    # The hostile message is there as text, never as markup, and without its ANSI codes.
    assert "\x1b" not in page
    assert "&lt;script&gt;document.body.setAttribute(&#39;data-pwned&#39;,&#39;1&#39;)&lt;/script&gt;" in page
    assert not any(name.startswith("on") for _, attrs in parsed.elements for name in attrs)
    assert [attrs.get("id") for tag, attrs in parsed.elements if tag == "img"] == ["score-distribution", "exercise-means"]
    assert len(parsed.scripts) == 1 and "data-pwned" not in parsed.scripts[0]
    assert HOSTILE_MESSAGE in " ".join(parsed.text)


def test_page_tables(page, data):
    parsed = _parse(page)
    rows = {attrs["data-exercise"]: attrs for tag, attrs in parsed.elements if tag == "tr" and "data-exercise" in attrs}
    assert list(rows) == [c.key for c in data.columns]
    text = " ".join(parsed.text)
    assert "not valid notebook JSON" in text and "not on the roster" in text and NOT_SUBMITTED in text
    # Full-marks percentage and discrimination as shown (1 of 3 students passed pick_device; n/a elsewhere).
    row = re.search(r'<tr data-exercise="04_devices:test_pick_device">(.*?)</tr>', page).group(1)
    assert '<td class="num full-marks">33%</td>' in row and '<td class="num mean-score">33%</td>' in row
    disc = next(e.discrimination for e in data.exercises if e.column.grade_id == "test_pick_device")
    assert f">{disc:.2f}</td>" in row
    row = re.search(r'<tr data-exercise="01_numpy_and_pytorch:[^"]*">(.*?)</tr>', page).group(1)
    assert '<td class="num discrimination">n/a</td>' in row


# --- in a real browser ------------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian Chromium not installed (/usr/bin/chromium): apt-get install -y chromium"
)


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
        # No network: every host resolves to nothing and every request goes to a closed local port.
        "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
        f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT)


@needs_chromium
def test_report_renders_in_chromium(course, data, tmp_path):
    url = (course / REPORT_FILE).as_uri()
    proc = _chromium(tmp_path / "profile", "--dump-dom", url)
    dom = proc.stdout
    assert proc.returncode == 0 and "</html>" in dom, proc.stderr[-3000:]
    parsed = _parse(dom)
    html_attrs = next(attrs for tag, attrs in parsed.elements if tag == "html")
    assert html_attrs.get("data-ready") == "true", "the page's script did not run (CSP hash?)"
    for id_ in ("score-distribution", "exercise-means"):
        (img,) = parsed.by_id(id_)
        assert img.get("data-loaded") == "true", f"#{id_} did not decode in the browser"
    for id_ in ("exercises", "failures", "ungraded"):
        assert len(parsed.by_id(id_)) == 1, f"#{id_} missing from the rendered DOM"
    assert sum(1 for tag, attrs in parsed.elements if tag == "tr" and "data-exercise" in attrs) == len(data.columns)
    assert sum(1 for tag, attrs in parsed.elements if tag == "div" and attrs.get("class") == "exercise-failures") == sum(
        1 for e in data.exercises if e.failures
    )
    body = next(attrs for tag, attrs in parsed.elements if tag == "body")
    assert "data-pwned" not in body, "student text ran as script in the report"
    assert [attrs.get("id") for tag, attrs in parsed.elements if tag == "img"] == ["score-distribution", "exercise-means"]
    assert not any(name.startswith("on") for _, attrs in parsed.elements for name in attrs)
    assert HOSTILE_MESSAGE in " ".join(parsed.text)


@needs_chromium
def test_report_screenshot_is_not_blank(course, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    proc = _chromium(tmp_path / "profile", "--window-size=1280,2400", f"--screenshot={shot}", (course / REPORT_FILE).as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-3000:]
    with Image.open(shot) as image:
        assert image.size == (1280, 2400)
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
    # Text, tables and the two plots: many distinct colours; a blank or error page has a handful.
    assert colors is not None and len(colors) > 200, f"screenshot looks blank ({len(colors or [])} colours)"
    # The plots' bar colour is on the page (the histogram's bars are #4c72b0).
    assert any(max(abs(a - b) for a, b in zip(rgb, (0x4C, 0x72, 0xB0))) <= 8 for _, rgb in colors)
