"""Trusted verdicts (issue 10): test cells run in the grader process, out of the student's reach.

One small class, graded once by the real CLI (``python -m torchsteps grade --jobs 1``), each student
submitting ``03_dtypes_and_casting`` only: two honest submissions (graded first and last) and one per
attack route that gave full marks, or leaked hidden tests, while test cells ran in the student's kernel.
Every attacking answer is wrong (it raises or returns nothing useful), so any point it gets is forged.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys

import nbformat
import pytest

from conftest import ASSIGNMENT, REPO, copy_course, write_roster, write_submissions
from torchsteps.authoring.demo_submissions import instructor_answers
from torchsteps.authoring.submissions import fill_solutions

NOTEBOOK = "03_dtypes_and_casting"
EXERCISES = ["to_float32", "round_to_int", "nonzero_mask", "sum_dtype", "brighten", "mean_as_float"]

WRONG = "    raise ValueError('no answer')\n"
ATTACKS = {
    # A displayed value (an execute_result) before raising: nbgrader took it as partial credit.
    "display_then_raise": lambda name: f"def {name}(*args, **kwargs):\n    import sys\n    sys.displayhook(1.0)\n{WRONG}",
    # IPython's own classes patched after being imported under other names: failures left no error output.
    "patches_ipython_renamed": lambda name: (
        "import IPython.core.interactiveshell as _shell_module\n"
        "_cls = getattr(_shell_module, 'Interactive' + 'Shell')\n"
        "_cls.showtraceback = lambda *a, **k: None\n"
        "_cls._showtraceback = lambda *a, **k: None\n"
        f"def {name}(*args, **kwargs):\n{WRONG}"
    ),
    # An exception handler through a renamed get_ipython: every exception swallowed.
    "hooks_renamed_get_ipython": lambda name: (
        "_shell = globals()['get_' + 'ipython']()\n"
        "_shell.set_custom_exc((BaseException,), lambda *a, **k: None)\n"
        f"def {name}(*args, **kwargs):\n{WRONG}"
    ),
    # The test helpers rebound through a frame's globals.
    "rebinds_helpers_via_frame": lambda name: (
        "import sys as _sys\n"
        "_g = _sys._getframe(0).f_globals\n"
        "for _k in list(_g):\n"
        "    if _k.startswith('check_'):\n"
        "        _g[_k] = lambda *a, **k: None\n"
        f"def {name}(*args, **kwargs):\n    return None\n"
    ),
    # The expected value read from the calling test's frame, or its source line through linecache.
    "reads_caller_frame": lambda name: (
        f"def {name}(*args, **kwargs):\n"
        "    import ast, linecache, sys\n"
        "    frame = sys._getframe(1)\n"
        "    if '_expected' in frame.f_locals:\n"
        "        return frame.f_locals['_expected']\n"
        "    try:\n"
        "        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()\n"
        "        call = ast.parse(line).body[0].value\n"
        "        return eval(compile(ast.Expression(call.args[1]), '<x>', 'eval'), frame.f_globals, frame.f_locals)\n"
        "    except Exception:\n"
        "        return None\n"
    ),
    # Hidden tests printed from In, the caller's frame, its source, dir(__main__), an exception message.
    "prints_hidden_tests": lambda name: (
        f"def {name}(*args, **kwargs):\n"
        "    import inspect, sys, __main__\n"
        "    frame = sys._getframe(1)\n"
        "    print('LEAK-IN', __main__.__dict__.get('In'))\n"
        "    print('LEAK-DIR', dir(__main__))\n"
        "    print('LEAK-LOCALS', {k: repr(v)[:300] for k, v in frame.f_locals.items()})\n"
        "    try:\n"
        "        print('LEAK-SRC', inspect.getsource(frame))\n"
        "    except Exception as e:\n"
        "        print('LEAK-SRC-FAILED', e)\n"
        "    raise ValueError('LEAK-EXC ' + repr(frame.f_locals.get('_expected')) + repr(frame.f_locals))\n"
    ),
}


def _notebook(answers, before_setup=None, after_all=None):
    release = nbformat.read(str(REPO / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    nb = fill_solutions(release, answers)
    if before_setup:
        nb.cells.insert(0, nbformat.v4.new_code_cell(before_setup))
    if after_all:
        nb.cells.append(nbformat.v4.new_code_cell(after_all))
    return nb


FAKE_CHECKS = (
    "with open('checks.py', 'w') as f:\n"
    "    f.write('def _ok(*a, **k):\\n    return None\\n'\n"
    "            'check_tensor = check_ndarray = check_value = check_dtype = check_shares_memory = check_unchanged = _ok\\n'\n"
    "            'def snapshot(x):\\n    return x\\n')\n"
)


def _class():
    source = nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    honest = _notebook(instructor_answers(source))
    students = {"a_honest": honest, "z_honest": honest}
    for attack, code in ATTACKS.items():
        answers = {name: code(name) for name in EXERCISES}
        after = "print('LEAK-LAST', In[-1])\nprint('LEAK-ALL', In)\n" if attack == "prints_hidden_tests" else None
        students[f"m_{attack}"] = _notebook(answers, after_all=after)
    students["m_writes_own_checks"] = _notebook({name: f"def {name}(*args, **kwargs):\n    return None\n" for name in EXERCISES},
                                                before_setup=FAKE_CHECKS)
    return {student: {NOTEBOOK: nb} for student, nb in students.items()}


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    students = _class()
    course = copy_course(tmp_path_factory.mktemp("attacks") / "course", demo_class=False)
    write_roster(course, sorted(students))
    write_submissions(course, students)
    # One worker: the honest submissions are graded first and last, by the same warm processes as the attacks.
    proc = subprocess.run([sys.executable, "-m", "torchsteps", "--course", str(course), "grade", "--jobs", "1"],
                          capture_output=True, text=True, cwd=course, env=dict(os.environ, PATH="/usr/bin:/bin"), timeout=30 * 60)
    stdout = proc.stdout + proc.stderr
    assert proc.returncode == 0, stdout[-4000:]
    return course, sorted(students)


def _scores(course, student):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "pytorch-first-steps") as gb:
        nb = gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student)
        return {g.name: (float(g.score), float(g.max_score)) for g in nb.grades}, bool(nb.flagged)


def test_honest_submissions_keep_full_marks_before_and_after_attacks(attacked):
    course, _ = attacked
    for student in ("a_honest", "z_honest"):
        scores, _ = _scores(course, student)
        assert scores and all(score == maximum > 0 for score, maximum in scores.values()), (student, scores)


@pytest.mark.parametrize("attack", [*ATTACKS, "writes_own_checks"])
def test_no_attack_gets_any_point(attacked, attack):
    course, _ = attacked
    scores, _ = _scores(course, f"m_{attack}")
    assert len(scores) == len(EXERCISES)
    assert all(score == 0 for score, _ in scores.values()), scores


def _hidden_lines():
    """Distinctive lines of the notebook's hidden tests (and their variable names for expected values)."""
    source = nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    lines = []
    for cell in source.cells:
        text = cell.source
        if "### BEGIN HIDDEN TESTS" in text:
            hidden = text.split("### BEGIN HIDDEN TESTS", 1)[1].split("### END HIDDEN TESTS", 1)[0]
            lines += [line.strip() for line in hidden.splitlines() if len(line.strip()) > 30]
    assert len(lines) > 20
    return lines


def test_hidden_tests_appear_in_no_output_feedback_or_export(attacked):
    course, students = attacked
    hidden = _hidden_lines()
    leaked = []
    autograded = course / "autograded" / "m_prints_hidden_tests" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    nb = nbformat.read(str(autograded), as_version=4)
    printed = json.dumps([cell.get("outputs", []) for cell in nb.cells])
    assert "LEAK-LOCALS" in printed and "LEAK-ALL" in printed, "the leaking submission did not run"
    for student in students:
        autograded = course / "autograded" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        outputs = json.dumps([cell.get("outputs", []) for cell in nbformat.read(str(autograded), as_version=4).cells])
        feedback = (course / "feedback" / student / ASSIGNMENT / f"{NOTEBOOK}.html").read_text(encoding="utf-8")
        for line in hidden:
            for where, text in (("autograded outputs", outputs), ("feedback", feedback)):
                if line in text or json.dumps(line)[1:-1] in text:
                    leaked.append((student, where, line))
    # The expected values live in hidden-test variables; what the student's code saw of its caller has none.
    seen = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("text", "") + out.get("evalue", "")
            seen += [line for line in text.splitlines() if line.startswith(("LEAK-LOCALS", "LEAK-EXC", "ValueError: LEAK-EXC"))]
    assert seen and not [line for line in seen if any(v in line for v in ("'_expected'", "'_before'", "'_dtypes'", "'_g'"))], seen[:3]
    export = (course / "grades.csv").read_text(encoding="utf-8")
    leaked += [("grades.csv", "export", line) for line in hidden if line in export]
    assert not leaked, leaked[:5]


def test_test_cells_carry_grader_side_outputs_only(attacked):
    """No execute_result in a test cell (no partial credit from displayed values); failures are error outputs."""
    course, _ = attacked
    nb = nbformat.read(str(course / "autograded" / "m_display_then_raise" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")]
    assert len(tests) == len(EXERCISES)
    for cell in tests:
        kinds = [o.output_type for o in cell.outputs]
        assert "execute_result" not in kinds and "error" in kinds, kinds


def test_attacks_are_hints_for_the_reviewer_not_grades(attacked):
    course, _ = attacked
    with (course / "grades.csv").open(newline="", encoding="utf-8") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    _, flagged = _scores(course, "m_hooks_renamed_get_ipython")
    assert flagged, "a submission reaching get_ipython under a computed name is flagged in the gradebook"
    assert "globals()" in rows["m_hooks_renamed_get_ipython"]["flags"]
    assert "under" in rows["m_hooks_renamed_get_ipython"]["flags"], "the flag names the cell as the student sees it"
    assert not _scores(course, "a_honest")[1] and not rows["a_honest"]["flags"]
