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
  (:mod:`torchsteps.review`).

Cells graded by hand (manually graded answers, task cells) count in an exercise's statistics only for
the students whose grade is in; until then they are *pending*, never 0.

Data: scores from the gradebook (:func:`torchsteps.export.collect_rows`), statuses from
:func:`torchsteps.grading.read_status` (or the results passed in), messages from
``<root>/autograded/<student>/<assignment>/<notebook>.ipynb``. Failure messages come from student code
and are hostile: every piece of text on the page goes through :func:`html.escape`, and the page carries a
Content-Security-Policy that forbids any network access and any script but its own (by hash).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .export import ExerciseColumn, GradeRow, collect_rows
from .grading import SubmissionResult, read_status
from .review import KINDS, ReviewItem, StudentRow, render_review_html, render_students_html, review_items, student_rows
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
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        messages = [failure_message(o) for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if messages and meta.get("grade_id"):
            errors[str(meta["grade_id"])] = messages[-1]
    return errors


def _course(root: Path):
    from nbgrader.coursedir import CourseDirectory

    from .course import load_config

    return CourseDirectory(config=load_config(root))


def collect_report_data(root: str | Path, assignment_id: str, results: list[SubmissionResult] | None = None) -> ReportData:
    """Everything the report shows, computed from the gradebook, the statuses and ``autograded/``."""
    from nbgrader.api import Gradebook

    root = Path(root).resolve()
    coursedir = _course(root)
    # Statuses come from the gradebook and STATUS_FILE (collect_rows); ``results`` is kept for callers
    # that pass them and is the same record grade_class has just written.
    with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
        columns, rows = collect_rows(gb, root, assignment_id)
    max_total = sum(c.max_score for c in columns)

    graded, ungraded, not_submitted = [], [], []
    for row in rows:
        if row.status == "graded":
            graded.append(row)
        elif row.status == "error":
            ungraded.append((row.student_id, row.reason or "no reason recorded"))
        else:
            not_submitted.append(row.student_id)

    autograded = root / coursedir.autograded_directory
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
        course_id=coursedir.course_id,
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

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 2em auto;
       max-width: 70em; padding: 0 1.5em; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
h3 { font-size: 1em; margin: 1.2em 0 0.3em; }
p.meta { color: #555; margin-top: 0; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1.2em; }
dl.summary dt { color: #555; } dl.summary dd { margin: 0; font-weight: 600; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; max-width: 100%; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 0.25em 0.7em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.low { color: #b00020; }
table.failure-messages, table#ungraded { width: 100%; }
table.failure-messages td.count, table.failure-messages th.num { width: 6em; }
a { color: #1a5fb4; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
code, .message { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.9em; }
.message { white-space: pre-wrap; overflow-wrap: anywhere; }
.pseudo { color: #666; font-style: italic; font-family: inherit; }
.note { color: #555; font-size: 0.9em; }
.none { color: #555; font-style: italic; }
"""

# Marks each image with data-loaded="true|false" once the page has loaded (decoded and non-empty), so
# that a headless browser's DOM dump shows whether the plots rendered. Allowed by hash in the CSP.
_SCRIPT = (
    "window.addEventListener('load', function () {"
    " document.querySelectorAll('img').forEach(function (img) {"
    " img.setAttribute('data-loaded', String(img.complete && img.naturalWidth > 0)); });"
    " document.documentElement.setAttribute('data-ready', 'true'); });"
)


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    return (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "n/a" if value is None else format(value, fmt)


def _anchor(e: ExerciseStats) -> str:
    return "failures-" + re.sub(r"[^0-9A-Za-z]+", "-", e.label)


def _message_cell(message: str) -> str:
    if message in (NOT_SUBMITTED, NO_ERROR_OUTPUT):
        return f'<td class="message pseudo">{_e(message)}</td>'
    shown = message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + " …"
    return f'<td class="message"><code>{_e(shown)}</code></td>'


def render_html(data: ReportData) -> str:
    """The report page for ``data``; every string from the gradebook or from students is escaped."""
    n = len(data.graded)
    totals = sorted(data.totals)
    mean_total = _mean(data.totals)
    median = None
    if totals:
        mid = len(totals) // 2
        median = totals[mid] if len(totals) % 2 else (totals[mid - 1] + totals[mid]) / 2
    title = f"Grading report: {data.assignment_id}"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_csp())}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        f"<script>{_SCRIPT}</script>",
        "</head>",
        "<body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Course <code>{_e(data.course_id)}</code>. Written by <code>make grade</code> '
        "(<code>python -m torchsteps grade</code>) from the gradebook and the autograded notebooks.</p>",
        '<section id="summary">',
        '<dl class="summary">',
        f'<dt>graded submissions</dt><dd id="graded-count">{n}</dd>',
        f'<dt>could not be graded</dt><dd id="ungraded-count">{len(data.ungraded)}</dd>',
        f'<dt>on the roster, nothing submitted</dt><dd id="not-submitted-count">{len(data.not_submitted)}</dd>',
        f"<dt>mean total</dt><dd>{_num(mean_total)} / {data.max_total:g}"
        + (f" ({mean_total / data.max_total:.0%})" if mean_total is not None and data.max_total else "") + "</dd>",
        f"<dt>median, min, max</dt><dd>{_num(median, 'g')}, {_num(totals[0] if totals else None, 'g')}, "
        f"{_num(totals[-1] if totals else None, 'g')}</dd>",
        "</dl>",
        "</section>",
        '<section id="distribution">',
        "<h2>Score distribution</h2>",
        f'<img id="score-distribution" alt="Histogram of the total scores of {n} graded submissions" '
        f'src="{plot_score_distribution(data.totals, data.max_total)}">',
        "</section>",
        '<section id="exercise-summary">',
        "<h2>Exercises</h2>",
        f'<img id="exercise-means" alt="Mean score of each exercise, as a fraction of its points" '
        f'src="{plot_exercise_means(data.exercises)}">',
        '<table id="exercises">',
        "<thead><tr><th>#</th><th>notebook</th><th>exercise</th><th class=\"num\">points</th>"
        "<th class=\"num\">mean points</th><th class=\"num\">mean score</th><th class=\"num\">full marks</th>"
        "<th class=\"num\">discrimination</th><th class=\"num\">failing</th><th class=\"num\">pending</th></tr></thead>",
        "<tbody>",
    ]
    for e in data.exercises:
        low = ' low' if e.discrimination is not None and e.discrimination < 0.2 else ''
        out.append(
            f'<tr data-exercise="{_e(e.column.key)}">'
            f'<td>{_e(e.label)}</td><td>{_e(e.column.notebook)}</td><td><code>{_e(e.column.grade_id)}</code></td>'
            f'<td class="num points">{e.column.max_score:g}</td>'
            f'<td class="num mean-points">{_num(e.mean_points)}</td>'
            f'<td class="num mean-score">{_pct(e.mean_fraction)}</td>'
            f'<td class="num full-marks">{_pct(e.full_marks)}</td>'
            f'<td class="num discrimination{low}">{_num(e.discrimination)}</td>'
            + (f'<td class="num failing"><a href="#{_anchor(e)}">{e.failed}</a></td>' if e.failures
               else f'<td class="num failing">{e.failed}</td>')
            + f'<td class="num pending">{f"{e.pending} pending" if e.pending else ""}</td></tr>'
        )
    out += [
        "</tbody></table>",
        '<p class="note">Mean score: mean of score / points over the graded submissions. Full marks: share of '
        "graded submissions with all the exercise's points. Discrimination: correlation between the "
        "exercise's score and the student's total on the other exercises (item-rest, point-biserial for "
        "all-or-nothing tests), from -1 to 1; below 0.2 (red) the exercise separates strong from weak "
        "students poorly; n/a when everyone scored the same on it or on the rest.</p>",
        "</section>",
        '<section id="failures">',
        "<h2>Most common failure messages</h2>",
        f'<p class="note">Per exercise, the error of its test cell in the autograded notebooks '
        f"(<code>ename: evalue</code>), identical messages grouped, the {TOP_MESSAGES} most common first, "
        "with the number of graded students who hit each.</p>",
    ]
    failing = [e for e in data.exercises if e.failures]
    if not failing:
        out.append('<p class="none">No test cell failed.</p>')
    for e in failing:
        out.append(f'<div class="exercise-failures" id="{_anchor(e)}" data-exercise="{_e(e.column.key)}">')
        out.append(f"<h3>{_e(e.label)} {_e(e.column.notebook)}: <code>{_e(e.column.grade_id)}</code> "
                   f"({e.failed} of {e.n} students)</h3>")
        out.append('<table class="failure-messages"><thead><tr><th class="num">students</th><th>message</th></tr></thead><tbody>')
        for message, count in e.failures[:TOP_MESSAGES]:
            out.append(f'<tr><td class="num count">{count}</td>{_message_cell(message)}</tr>')
        rest = e.failures[TOP_MESSAGES:]
        if rest:
            out.append(f'<tr class="more"><td class="num count">{sum(c for _, c in rest)}</td>'
                       f'<td class="pseudo">{len(rest)} other messages</td></tr>')
        out.append("</tbody></table></div>")
    out += [
        "</section>",
        '<section id="ungraded-section">',
        "<h2>Could not be graded</h2>",
        '<table id="ungraded"><thead><tr><th>student</th><th>reason</th></tr></thead><tbody>',
    ]
    for student, reason in data.ungraded:
        out.append(f'<tr><td class="student">{_e(student)}</td><td class="reason message">{_e(reason)}</td></tr>')
    if not data.ungraded:
        out.append('<tr class="none"><td colspan="2">Every submission was graded.</td></tr>')
    out.append("</tbody></table>")
    if data.not_submitted:
        out.append('<p id="not-submitted">On the roster but nothing in <code>submitted/</code>: '
                   + ", ".join(f"<code>{_e(s)}</code>" for s in data.not_submitted) + ".</p>")
    out += ["</section>", render_review_html(data.review), render_students_html(data.students)]
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def write_report(root: Path, assignment_ids: str | list[str], results: list[SubmissionResult] | None = None) -> Path:
    """Write the report of one assignment, or of several, and return the path of ``<root>/report/index.html``.

    One assignment: ``report/index.html`` is its report. Several: each gets
    ``report/<assignment>/index.html`` and ``report/index.html`` links them, with what needs attention
    and the per-student table of all of them. ``results`` are the statuses from
    :func:`torchsteps.grading.grade_class`; when ``None`` they are read from
    :data:`torchsteps.grading.STATUS_FILE`.
    """
    root = Path(root).resolve()
    ids = [assignment_ids] if isinstance(assignment_ids, str) else list(assignment_ids)
    path = root / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if len(ids) == 1:
        path.write_text(render_html(collect_report_data(root, ids[0], results)), encoding="utf-8")
        return path
    datas = []
    for assignment_id in ids:
        data = collect_report_data(root, assignment_id, results)
        page = root / "report" / assignment_id / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(render_html(data), encoding="utf-8")
        datas.append(data)
    path.write_text(render_index_html(datas), encoding="utf-8")
    return path


def render_index_html(datas: list[ReportData]) -> str:
    """The page linking each assignment's report, with the attention list and student table of all."""
    title = "Grading report: " + ", ".join(d.assignment_id for d in datas)
    out = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_csp())}">',
        f"<title>{_e(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<h1>{_e(title)}</h1>", '<ul id="assignments">',
    ]
    for d in datas:
        out.append(f'<li><a href="{_e(d.assignment_id)}/index.html">{_e(d.assignment_id)}</a>: '
                   f"{len(d.graded)} graded, {len(d.ungraded)} could not be graded, {len(d.not_submitted)} not submitted</li>")
    out.append("</ul>")
    review = sorted((i for d in datas for i in d.review), key=lambda i: (KINDS.index(i.kind), i.assignment_id, i.student_id))
    out += [render_review_html(review), render_students_html([s for d in datas for s in d.students])]
    out += ["</body>", "</html>", ""]
    return "\n".join(out)
