"""The class report: one offline HTML page an instructor opens after ``make grade``.

``write_report`` writes ``<root>/report/index.html``, a single self-contained file (plots are PNGs made
with matplotlib and embedded as ``data:`` URIs, the CSS is inline, nothing is fetched from anywhere) with:

- the distribution of total scores of the graded submissions (histogram);
- per exercise (test cell): points, mean score (points and fraction of the maximum, also as a bar
  chart), the share of students with full marks, and the discrimination index (see
  :func:`item_rest_correlation`);
- per exercise, the most common failure messages (``ename: evalue`` of the test cell's error in the
  autograded notebook) and how many students hit each;
- the students whose submission could not be graded, with the reason, and the roster students who
  submitted nothing;
- what needs attention (flagged, late, ungradeable, waiting for a manual grade) and a per-student table
  (:mod:`torchsteps.results.review`).

Cells graded by hand (manually graded answers, task cells) count in an exercise's statistics only for
the students whose grade is in; until then they are *pending*, never 0. With several assignments,
:func:`write_reports` writes one page each and an index page.

Data: the rows of the export (:func:`torchsteps.results.export.collect_rows`: scores from the gradebook,
statuses of the run), and messages from
``<root>/autograded/<student>/<assignment>/<notebook>.ipynb``. Failure messages come from student code
and are hostile: the template (``templates/report.html.j2``) autoescapes every value, and the page carries a
Content-Security-Policy that forbids any network access and any script but its own (by hash).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import markupsafe
import nbformat

from .export import ExerciseColumn, GradeRow, collect_rows
from ..constants import is_test_cell
from .review import KINDS, ReviewItem, StudentRow, review_items, student_rows
from .status import Status
from .table import short_labels

__all__ = [
    "REPORT_FILE",
    "ExerciseStats",
    "ReportData",
    "item_rest_correlation",
    "failure_message",
    "collect_report_data",
    "render_html",
    "write_report",
    "write_reports",
]

REPORT_FILE = "report/index.html"

# How many distinct failure messages are listed per exercise, and how long one may be on the page.
TOP_MESSAGES = 5
MAX_MESSAGE_CHARS = 400

# Pseudo-messages for a test cell that scored below its maximum without an error output to quote.
NOT_SUBMITTED = "(notebook not submitted)"
NO_ERROR_OUTPUT = "(no error output in the autograded notebook)"

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


# --- statistics -------------------------------------------------------------------------------------

def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def item_rest_correlation(item: list[float], rest: list[float]) -> float | None:
    """Discrimination of one exercise: the item-rest correlation, or ``None`` when it is undefined.

    Over the graded students ``i = 1..n``, with ``x_i`` the student's score on the exercise as a
    fraction of its maximum and ``R_i`` the student's total on all the OTHER exercises (the exercise
    itself is left out so that it does not correlate with itself), this is Pearson's correlation::

        r = sum_i (x_i - mean(x)) (R_i - mean(R))
            / sqrt( sum_i (x_i - mean(x))^2 * sum_i (R_i - mean(R))^2 )

    For an exercise scored all-or-nothing, as our test cells are, this is the point-biserial
    correlation. It lies in [-1, 1]: near 1, the students who pass the exercise are those who do well on
    the rest; near 0 or negative, the exercise does not separate strong from weak students. It is
    undefined (``None``, shown "n/a") for fewer than two students or when either ``x`` or ``R`` has no
    variance (everyone scored the same on the exercise, or on the rest).
    """
    if len(item) != len(rest):
        raise ValueError(f"item and rest differ in length: {len(item)} != {len(rest)}")
    n = len(item)
    if n < 2:
        return None
    mx, mr = sum(item) / n, sum(rest) / n
    sxx = sum((x - mx) ** 2 for x in item)
    srr = sum((r - mr) ** 2 for r in rest)
    if sxx <= 1e-12 or srr <= 1e-12:
        return None
    sxr = sum((x - mx) * (r - mr) for x, r in zip(item, rest))
    return max(-1.0, min(1.0, sxr / math.sqrt(sxx * srr)))


def failure_message(output) -> str:
    """``"ename: evalue"`` of an ``error`` output (just ``ename`` when ``evalue`` is empty), cleaned.

    ANSI colour codes and other control characters are removed and whitespace runs are collapsed, so
    that identical failures group together. The text is NOT escaped here; the renderer escapes it.
    """
    ename = str(output.get("ename", "") or "Error")
    evalue = str(output.get("evalue", "") or "")
    text = f"{ename}: {evalue}" if evalue.strip() else ename
    text = _CONTROL.sub(" ", _ANSI.sub("", text))
    return " ".join(text.split())


# --- data -------------------------------------------------------------------------------------------

@dataclass
class ExerciseStats:
    """What the report says about one exercise (test cell), over the graded students."""

    column: ExerciseColumn
    label: str  # "4.1": notebook number and exercise number, as in the terminal table
    n: int  # graded students
    mean_points: float | None
    mean_fraction: float | None  # mean of score / max_score
    full_marks: float | None  # fraction of graded students with full marks
    discrimination: float | None  # item-rest correlation; None when undefined
    failures: list[tuple[str, int]] = field(default_factory=list)  # (message, students), most common first
    failed: int = 0  # graded students below full marks
    pending: int = 0  # graded students whose manual grade for this cell is not in yet (left out of n)


@dataclass
class ReportData:
    course_id: str
    assignment_id: str
    columns: list[ExerciseColumn]
    max_total: float
    graded: list[GradeRow]
    totals: list[float]  # total score of each graded student, in the order of ``graded``
    exercises: list[ExerciseStats]
    ungraded: list[tuple[str, str]]  # (student, reason)
    not_submitted: list[str]  # roster students with no submission
    review: list[ReviewItem] = field(default_factory=list)  # flagged, late, ungradeable, pending
    students: list[StudentRow] = field(default_factory=list)  # one per student


def _notebook_errors(path: Path) -> dict[str, str] | None:
    """``{grade_id: message}`` of the test cells with an error output; ``None`` if there is no notebook."""
    if not path.is_file():
        return None
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception:  # an autograded notebook we cannot read: report its cells as without message
        return {}
    errors = {}
    for cell in nb.cells:
        if not is_test_cell(cell):
            continue
        messages = [failure_message(o) for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        grade_id = cell.metadata.nbgrader.get("grade_id")
        if messages and grade_id:
            errors[str(grade_id)] = messages[-1]
    return errors


def collect_report_data(columns: list[ExerciseColumn], rows: list[GradeRow], *, course_id: str, assignment_id: str,
                        autograded_dir: str | Path) -> ReportData:
    """Everything the report shows: the export's rows (:func:`torchsteps.results.export.collect_rows`) plus
    the failure messages of the test cells in ``autograded_dir/<student>/<assignment>/*.ipynb``."""
    max_total = sum(c.max_score for c in columns)

    graded, ungraded, not_submitted = [], [], []
    for row in rows:
        if row.status is Status.GRADED:
            graded.append(row)
        elif row.status is Status.ERROR:
            ungraded.append((row.student_id, row.reason or "no reason recorded"))
        else:
            not_submitted.append(row.student_id)

    autograded = Path(autograded_dir)
    errors: dict[tuple[str, str], dict[str, str] | None] = {}
    for row in graded:
        for notebook in dict.fromkeys(c.notebook for c in columns):
            errors[row.student_id, notebook] = _notebook_errors(autograded / row.student_id / assignment_id / f"{notebook}.ipynb")

    def score(row: GradeRow, c: ExerciseColumn) -> float:
        return float(row.scores.get(c.key, 0.0))

    totals = [sum(score(r, c) for c in columns) for r in graded]
    exercises = []
    for label, c in zip(short_labels(columns), columns):
        # A cell waiting for its manual grade has no score yet: left out, not counted as 0.
        rated = [(r, t) for r, t in zip(graded, totals) if c.key not in r.pending]
        points = [score(r, c) for r, _ in rated]
        fractions = [p / c.max_score if c.max_score else 0.0 for p in points]
        rest = [t - p for (_, t), p in zip(rated, points)]
        full = [c.max_score > 0 and p >= c.max_score - 1e-9 for p in points]
        messages: Counter[str] = Counter()
        for (row, _), is_full in zip(rated, full):
            if is_full or c.kind != "auto":  # only test cells have error outputs to quote
                continue
            found = errors[row.student_id, c.notebook]
            if found is None:
                messages[NOT_SUBMITTED] += 1
            else:
                messages[found.get(c.grade_id, NO_ERROR_OUTPUT)] += 1
        exercises.append(ExerciseStats(
            column=c,
            label=label,
            n=len(rated),
            mean_points=_mean(points),
            mean_fraction=_mean(fractions),
            full_marks=_mean([1.0 if f else 0.0 for f in full]),
            discrimination=item_rest_correlation(fractions, rest),
            failures=sorted(messages.items(), key=lambda kv: (-kv[1], kv[0])),
            failed=sum(1 for f in full if not f),
            pending=len(graded) - len(rated),
        ))
    return ReportData(
        course_id=course_id,
        assignment_id=assignment_id,
        columns=columns,
        max_total=max_total,
        graded=graded,
        totals=totals,
        exercises=exercises,
        ungraded=sorted(ungraded),
        not_submitted=sorted(not_submitted),
        review=review_items(rows),
        students=student_rows(rows),
    )


# --- plots ------------------------------------------------------------------------------------------

def _png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plot_score_distribution(totals: list[float], max_total: float) -> str:
    """Histogram of the total scores, as a ``data:image/png`` URI (no pyplot: no global state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    top = max(max_total, max(totals, default=0.0), 1.0)
    width = max(1.0, math.ceil(top / 20))
    edges = [i * width for i in range(int(math.ceil(top / width)) + 2)]
    if totals:
        ax.hist(totals, bins=edges, color="#4c72b0", edgecolor="white")
        ax.axvline(sum(totals) / len(totals), color="#c44e52", linestyle="--", linewidth=1.2, label="mean")
        ax.legend(frameon=False, loc="upper right")
    else:
        ax.text(0.5, 0.5, "no graded submissions", ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_xlim(0, edges[-1])
    ax.set_xlabel(f"total score (points, maximum {max_total:g})")
    ax.set_ylabel("students")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def plot_exercise_means(exercises: list[ExerciseStats]) -> str:
    """Horizontal bars: mean score of each exercise as a fraction of its maximum, one colour per notebook."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, max(2.0, 0.26 * len(exercises) + 1.0)), layout="constrained")
    ax = fig.add_subplot()
    notebooks = list(dict.fromkeys(e.column.notebook for e in exercises))
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    ys = list(range(len(exercises)))
    values = [e.mean_fraction or 0.0 for e in exercises]
    colors = [palette[notebooks.index(e.column.notebook) % len(palette)] for e in exercises]
    ax.barh(ys, values, color=colors, height=0.7)
    ax.set_yticks(ys, [f"{e.label} {e.column.grade_id}" for e in exercises], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
    ax.set_xlabel("mean score (fraction of the exercise's points)")
    ax.grid(axis="x", color="#ddd", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    if not exercises:
        ax.text(0.5, 0.5, "no exercises", ha="center", va="center", transform=ax.transAxes, color="#666")
    return _png(fig)


# --- HTML -------------------------------------------------------------------------------------------

# Marks each image with data-loaded="true|false" once the page has loaded (decoded and non-empty), so
# that a headless browser's DOM dump shows whether the plots rendered. Allowed by hash in the CSP.
_SCRIPT = (
    "window.addEventListener('load', function () {"
    " document.querySelectorAll('img').forEach(function (img) {"
    " img.setAttribute('data-loaded', String(img.complete && img.naturalWidth > 0)); });"
    " document.documentElement.setAttribute('data-ready', 'true'); });"
)

# Below this item-rest correlation an exercise is shown in red (it separates strong from weak students poorly).
LOW_DISCRIMINATION = 0.2


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    return (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "n/a" if value is None else format(value, fmt)


def _anchor(e: ExerciseStats) -> str:
    return "failures-" + re.sub(r"[^0-9A-Za-z]+", "-", e.label)


def _shorten(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + " …"


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # Autoescape everything: failure messages, reasons and student ids come from student code.
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("torchsteps.results", "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
    )
    env.filters.update(pct=_pct, num=_num, anchor=_anchor, shorten=_shorten, g=lambda v: format(v, "g"))
    return env


def render_html(data: ReportData) -> str:
    """The report page for ``data`` (template ``templates/report.html.j2``); every string is escaped."""
    totals = sorted(data.totals)
    median = None
    if totals:
        mid = len(totals) // 2
        median = totals[mid] if len(totals) % 2 else (totals[mid - 1] + totals[mid]) / 2
    env = _environment()
    css = env.loader.get_source(env, "report.css")[0]
    return env.get_template("report.html.j2").render(
        data=data,
        title=f"Grading report: {data.assignment_id}",
        csp=_csp(),
        css=markupsafe.Markup(css),  # ours, and <style> is raw text: entities would not be decoded there
        script=markupsafe.Markup(_SCRIPT),  # ours; must stay byte-identical to its hash in the CSP
        mean_total=_mean(data.totals),
        median=median,
        minimum=totals[0] if totals else None,
        maximum=totals[-1] if totals else None,
        distribution_png=plot_score_distribution(data.totals, data.max_total),
        means_png=plot_exercise_means(data.exercises),
        top_messages=TOP_MESSAGES,
        low_discrimination=LOW_DISCRIMINATION,
        pseudo_messages=(NOT_SUBMITTED, NO_ERROR_OUTPUT),
    ) + "\n"


def write_report(root: str | Path, data: ReportData) -> Path:
    """Write the report page for ``data`` to ``<root>/`` :data:`REPORT_FILE` and return its path."""
    path = Path(root) / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(data), encoding="utf-8")
    return path


def write_reports(root: str | Path, datas: list[ReportData]) -> Path:
    """Write the report of each assignment in ``datas``; returns the path of ``<root>/`` :data:`REPORT_FILE`.

    One assignment: :data:`REPORT_FILE` is its page. Several: each gets ``report/<assignment>/index.html``
    and :data:`REPORT_FILE` links them, with what needs attention and the per-student table of all of them
    (template ``templates/index.html.j2``).
    """
    if len(datas) == 1:
        return write_report(root, datas[0])
    for data in datas:
        page = Path(root) / "report" / data.assignment_id / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(render_html(data), encoding="utf-8")
    env = _environment()
    review = sorted((i for d in datas for i in d.review), key=lambda i: (KINDS.index(i.kind), i.assignment_id, i.student_id))
    html = env.get_template("index.html.j2").render(
        title="Grading report: " + ", ".join(d.assignment_id for d in datas),
        csp=_csp(), css=markupsafe.Markup(env.loader.get_source(env, "report.css")[0]),
        datas=datas, review=review, students=[s for d in datas for s in d.students],
    ) + "\n"
    path = Path(root) / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
