"""A hostile class graded by the real CLI in one worker (issue 11): isolation, limits, inert HTML, no paths.

One small course is graded once for this module by `python -m torchsteps grade -j 1`, so every
submission goes through the same worker (and warm parent) one after another, in name order. Every
submission holds only 04_devices (the others are missing and score 0 without a kernel):
- a_planter: correct answers, plus a startup file in every IPython dir that sabotages the checks and
  copies the next student's answers to /tmp, files in /tmp, /dev/shm and HOME, a read-only folder, a
  System V shared-memory segment and a background process that keeps writing into /tmp;
- b_honest: the instructor's answers, graded after a_planter: full marks, outputs as when graded alone;
- c_filler: fills its writable space (bytes) in its first answer; d_inodes: makes files until none are
  left; e_honest: the instructor's answers again, after both: full marks;
- f_flood: every output kind, far over the output cap;
- g_scripts: <script>, <img onerror> and scripts in markdown and HTML outputs, and tracebacks that show
  the grading machine's paths.
Then headless Chromium opens g_scripts's feedback page and its page in the live formgrader (a real
`jupyter server`, started here on 127.0.0.1): no student script runs (the title stays, no request
reaches a local listener), while the same markup in a plain page does both (the control).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_markdown_cell

from conftest import ASSIGNMENT, REPO, GradedCourse, copy_course
from torchsteps.grading.course import open_api
from torchsteps.authoring.demo_submissions import instructor_answers
from torchsteps.sandbox import SandboxedKernelManager, SandboxUnavailable, check_sandbox
from torchsteps.authoring.submissions import fill_solutions

try:
    check_sandbox()
except SandboxUnavailable as why:  # pragma: no cover - CI installs bubblewrap
    pytest.skip(f"no sandbox on this machine: {why}", allow_module_level=True)

NOTEBOOK = "04_devices"
CHROMIUM = Path("/usr/bin/chromium")
GRADE_TIMEOUT = 20 * 60
STUDENTS = ["a_planter", "b_honest", "c_filler", "d_inodes", "e_honest", "f_flood", "g_scripts"]

PLANT = r'''
import os, subprocess, ctypes, IPython
for base in {IPython.paths.get_ipython_dir(), os.path.expanduser("~/.ipython"), "/tmp/.ipython"}:
    try:  # this kernel's own profile is read-only for it; /tmp/.ipython (the old IPYTHONDIR) is not
        os.makedirs(base + "/profile_default/startup", exist_ok=True)
        open(base + "/profile_default/startup/00-sabotage.py", "w").write(
            "import checks, shutil, glob\n"
            "def _fail(*a, **k):\n    raise AssertionError('sabotaged by a_planter')\n"
            "checks.check_tensor = checks.check_ndarray = checks.check_value = _fail\n"
            "[shutil.copy(p, '/tmp/') for p in glob.glob('*.ipynb')]\n"
        )
    except PermissionError:
        pass
for d in ("/tmp", "/dev/shm", os.path.expanduser("~"), "."):
    open(os.path.join(d, "planted"), "w").write("a_planter was here")
os.makedirs("/tmp/ro/inner"); open("/tmp/ro/inner/planted", "w").write("x")
os.chmod("/tmp/ro/inner", 0o555); os.chmod("/tmp/ro", 0o555)
libc = ctypes.CDLL(None)
libc.shmget(0x7357, 4096, 0o1666)
subprocess.Popen(["sh", "-c", "while true; do echo x > /tmp/planted-late; sleep 0.1; done"], start_new_session=True)
'''

FILL = r'''
try:  # files of 32 MiB (one file may not pass c.SandboxedKernelManager.max_file_mb, 64)
    for i in range(100):
        with open(f"/tmp/fill-{i}", "wb") as f:
            for _ in range(32):
                f.write(b"x" * (1 << 20))
except OSError as e:
    print("disk full:", e)
'''

INODES = r'''
import os
try:
    for i in range(1_000_000):
        open(f"/tmp/f{i}", "w").close()
except OSError as e:
    print("no inodes:", e)
'''

FLOOD = r'''
from IPython.display import display, HTML
print("s" * 3_000_000)
display(HTML("<b>" + "h" * 3_000_000 + "</b>"))
h = display("start", display_id=True)
for _ in range(40):
    h.update("u" * 500_000)
'''

BEACON_JS = "document.title='pwned'; new Image().src='http://127.0.0.1:{port}/img'; fetch('http://127.0.0.1:{port}/fetch')"
TITLE_MARK = "hostile-marker-9931"


def scripts_answer(port: int, solution: str) -> str:
    js = BEACON_JS.format(port=port)
    return (
        solution
        + "\nfrom IPython.display import display, HTML, Markdown, Javascript\n"
        + f"display(HTML({'<p>' + TITLE_MARK + '</p><script>' + js + '</script>'!r}))\n"
        + f"display(HTML({'<img src=x onerror=' + json.dumps(js) + '>'!r}))\n"
        + f"display(Markdown({'<script>' + js + '</script>'!r}))\n"
        + f"display(Javascript({js!r}))\n"
        + "get_ipython().system('pip --version')\n"
        + "import torch\ntry:\n    torch.load('/nonexistent.pt')\nexcept FileNotFoundError:\n    import traceback; traceback.print_exc()\n"
    )


class _Beacon(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):
        _Beacon.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def beacon():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Beacon)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def course(tmp_path_factory, beacon) -> GradedCourse:
    root = copy_course(tmp_path_factory.mktemp("hostile") / "course", demo_class=False, extra_students=STUDENTS)
    generated = open_api(root).generate_assignment(ASSIGNMENT, force=True)
    assert generated["success"], generated.get("log", "") + generated.get("error", "")
    release = nbformat.read(str(root / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    solutions = instructor_answers(nbformat.read(str(root / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4))
    first = "pick_device"
    scripts = fill_solutions(release, dict(solutions, pick_device=scripts_answer(beacon.server_address[1], solutions[first])))
    js = BEACON_JS.format(port=beacon.server_address[1])
    scripts.cells.insert(0, new_markdown_cell(f"# {TITLE_MARK}\n<script>{js}</script>\n<img src=x onerror=\"{js}\">"))
    submissions = {
        "a_planter": fill_solutions(release, dict(solutions, pick_device=solutions[first] + "\n" + PLANT)),
        "b_honest": fill_solutions(release, solutions),
        "c_filler": fill_solutions(release, dict(solutions, pick_device=solutions[first] + "\n" + FILL)),
        "d_inodes": fill_solutions(release, dict(solutions, pick_device=solutions[first] + "\n" + INODES)),
        "e_honest": fill_solutions(release, solutions),
        "f_flood": fill_solutions(release, dict(solutions, pick_device=solutions[first] + "\n" + FLOOD)),
        "g_scripts": scripts,
    }
    for student, nb in submissions.items():
        out = root / "submitted" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        out.parent.mkdir(parents=True)
        nbformat.write(nb, str(out))
    proc = subprocess.run(
        [sys.executable, "-m", "torchsteps", "--course", str(root), "grade", "-j", "1"],
        cwd=root, capture_output=True, text=True, timeout=GRADE_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return GradedCourse(root, proc.stdout, {})


def autograded(course: GradedCourse, student: str) -> nbformat.NotebookNode:
    return nbformat.read(str(course.root / "autograded" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)


def full_marks(course: GradedCourse, student: str) -> bool:
    scores = course.scores(student, NOTEBOOK)
    return all(score == top for score, top in scores.values())


def outputs_text(nb) -> str:
    return json.dumps([c.get("outputs", []) for c in nb.cells])


# --- a later student is graded exactly as alone --------------------------------------------------------

def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def test_planter_ran_its_code(course):
    nb = autograded(course, "a_planter")
    assert full_marks(course, "a_planter"), "the planter's own answers are correct"
    outputs = _cell(nb, "pick_device").outputs
    assert not [o for o in outputs if o.output_type == "error"], "the planting failed, so the next tests prove nothing"


def test_student_after_a_planter_is_graded_as_alone(course):
    assert full_marks(course, "b_honest")
    text = outputs_text(autograded(course, "b_honest"))
    assert "sabotaged" not in text and "planted" not in text


def test_student_after_the_limits_is_graded_as_alone(course):
    assert full_marks(course, "e_honest")
    # The graded cells show the same as b_honest's (graded right after the planter): nothing leaks in.
    def clean(nb):  # per graded cell: its stream text (however it was split into messages), then the rest;
        # the kernel's process id in IPython's cell file names (/tmp/ipykernel_<pid>/) differs from run to run
        return [(re.sub(r"ipykernel_\d+", "ipykernel_<pid>", "".join(o.text for o in c.get("outputs", []) if o.output_type == "stream")),
                 [{k: v for k, v in o.items() if k != "execution_count"} for o in c.get("outputs", []) if o.output_type != "stream"])
                for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")]
    assert clean(autograded(course, "e_honest")) == clean(autograded(course, "b_honest"))


# --- write limits ----------------------------------------------------------------------------------

def _not_run_reasons(nb) -> list[str]:
    return [o.evalue for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("ename") == "CellNotRun"]


def test_filling_the_disk_loses_the_remaining_cells_with_a_reason(course):
    nb = autograded(course, "c_filler")
    assert "disk full" in outputs_text(nb) and "No space left" in outputs_text(nb)
    reasons = _not_run_reasons(nb)
    assert reasons and all("filled its 256 MiB of writable space" in r and "scratch_mb" in r for r in reasons), reasons
    assert course.scores("c_filler", NOTEBOOK)["test_pick_device"][0] == 0


def test_running_out_of_inodes_loses_the_remaining_cells_with_a_reason(course):
    nb = autograded(course, "d_inodes")
    assert "no inodes" in outputs_text(nb)
    reasons = _not_run_reasons(nb)
    assert reasons and all("made 4096 files" in r and "scratch_inodes" in r for r in reasons), reasons


# --- output cap ------------------------------------------------------------------------------------

def test_flood_of_every_kind_is_capped(course):
    path = course.root / "autograded" / "f_flood" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    assert path.stat().st_size < 2_300_000, path.stat().st_size  # c.GuardedExecute.max_output_bytes + the notebook
    assert "[output truncated]" in path.read_text(encoding="utf-8")
    assert full_marks(course, "f_flood"), "the cap drops output, never a verdict"


# --- feedback: no grading-machine paths ------------------------------------------------------------

def _feedback(course, student) -> str:
    return (course.root / "feedback" / student / ASSIGNMENT / f"{NOTEBOOK}.html").read_text(encoding="utf-8")


def test_feedback_shows_no_grading_machine_paths(course):
    page = _feedback(course, "g_scripts")
    assert "pip " in page and "FileNotFoundError" in page and "&lt;python&gt;" in page
    for path in {sys.prefix, os.path.realpath(sys.prefix), sys.base_prefix, str(course.root), str(REPO)}:
        assert path not in page, f"feedback shows {path}"
    # The autograded notebook (instructor only) still has them: the check above is not vacuous.
    assert os.path.realpath(sys.prefix) in outputs_text(autograded(course, "g_scripts")) or sys.prefix in outputs_text(autograded(course, "g_scripts"))


def test_feedback_has_a_csp_and_no_raw_student_markup(course):
    from torchsteps.nbgrader_plugins.feedback import FEEDBACK_CSP

    page = _feedback(course, "g_scripts")
    head = page[:page.index("</head>")]
    metas = re.findall(r"<meta [^>]*Content-Security-Policy[^>]*>", head)
    assert len(metas) == 1 and f'content="{FEEDBACK_CSP}"' in metas[0], metas
    assert "default-src 'none'" in FEEDBACK_CSP and "script-src" not in FEEDBACK_CSP
    assert "<img src=x onerror" not in page and "<script>document.title" not in page
    assert "&lt;img src=x onerror" in page  # shown as text


# --- in a real browser -------------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian Chromium not installed (/usr/bin/chromium)")


def _chromium(profile: Path, url: str) -> str:
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--virtual-time-budget=5000", "--dump-dom", url,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "</html>" in proc.stdout, proc.stderr[-3000:]
    return proc.stdout


def _title(dom: str) -> str:
    start = dom.find("<title>")
    return dom[start + 7:dom.find("</title>", start)] if start >= 0 else ""


@needs_chromium
def test_control_the_same_markup_runs_in_a_plain_page(beacon, tmp_path):
    """Without sanitizing and CSP the markup does run: the checks below can see a script that runs."""
    js = BEACON_JS.format(port=beacon.server_address[1])
    page = tmp_path / "control.html"
    page.write_text(f"<html><head><title>control</title></head><body><img src=x onerror=\"{js}\"></body></html>")
    _Beacon.hits.clear()
    dom = _chromium(tmp_path / "profile", page.as_uri())
    time.sleep(0.5)
    assert _title(dom) == "pwned" and _Beacon.hits, (dom[:500], _Beacon.hits)


@needs_chromium
def test_feedback_page_runs_no_student_script(course, beacon, tmp_path):
    _Beacon.hits.clear()
    dom = _chromium(tmp_path / "profile", (course.root / "feedback" / "g_scripts" / ASSIGNMENT / f"{NOTEBOOK}.html").as_uri())
    time.sleep(0.5)
    assert _title(dom) == NOTEBOOK and "pwned" not in dom.split("</title>")[0]
    assert _Beacon.hits == []
    assert TITLE_MARK in dom  # the student's content is shown, as text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def formgrader(course, tmp_path_factory):
    """A real `jupyter server` with nbgrader's formgrader, on 127.0.0.1, serving the graded course."""
    port, token = _free_port(), "t" + os.urandom(8).hex()
    home = tmp_path_factory.mktemp("jupyter-home")
    env = dict(os.environ, HOME=str(home), JUPYTER_RUNTIME_DIR=str(home / "runtime"))
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={course.root}"],
        cwd=course.root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("jupyter server did not start:\n" + (home / "server.log").read_text()[-3000:])
        yield base, token
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _submission_id(course, student) -> str:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course.root / 'gradebook.db'}", "pytorch-first-steps") as gb:
        return gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student).id


@needs_chromium
def test_formgrader_submission_view_runs_no_student_script(course, formgrader, beacon, tmp_path):
    base, token = formgrader
    url = f"{base}/formgrader/submissions/{_submission_id(course, 'g_scripts')}/?token={token}"
    page = urllib.request.urlopen(url, timeout=30).read().decode()
    assert TITLE_MARK in page, "not the submission's page"
    _Beacon.hits.clear()
    dom = _chromium(tmp_path / "profile", url)
    time.sleep(0.5)
    assert TITLE_MARK in dom
    assert "pwned" not in _title(dom)
    assert _Beacon.hits == []
