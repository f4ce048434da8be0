"""The grader process talks to the student kernel directly, over a socket the host hands it (issue 14).

One real sandboxed kernel and one grader process run a small notebook through ``TrustedExecute`` (the
execute step of autograding), with a 6 s limit per cell and a 1 MiB limit on what the student side may
send back. The host passes the grader a connection to the harness's serve loop (SCM_RIGHTS) instead of
relaying every call; the time limit, the size limit and the student's printed output must still work
as they did when the host relayed, and a failure in one test cell must not leak into the next.
"""

from __future__ import annotations

import json

import pytest
from nbformat.v4 import new_code_cell
from traitlets.config import Config

from conftest import execute_step
from torchsteps.nbgrader_plugins.trusted_execute import TrustedExecute

CELL_TIMEOUT = 6


def _cell(source, grade_id, *, kind):
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {
        "grade_id": grade_id, "schema_version": 3, "locked": kind != "answer",
        "grade": kind == "test", "solution": kind == "answer", **({"points": 1} if kind == "test" else {}),
    }
    return cell


CELLS = [
    _cell("import torch", "setup", kind="setup"),
    _cell(
        "import time\n"
        "def double(x):\n"
        "    print('student says', x.shape[0])\n"
        "    return x * 2\n"
        "def spin(x):\n"
        "    while True:\n"
        "        pass\n"
        "def huge():\n"
        "    return torch.zeros(1_000_000)\n"
        "def refuses(x):\n"
        "    raise ValueError('negative sizes are not allowed')\n",
        "answer", kind="answer",
    ),
    # Many calls in one cell: one connection; the student's output in order with the test's own.
    _cell(
        "print('before')\n"
        "for n in range(1, 201):\n"
        "    assert torch.equal(double(torch.ones(n)), torch.full((n,), 2.0))\n"
        "    if n == 100:\n"
        "        print('middle')\n"
        "print('after')\n",
        "many_calls", kind="test",
    ),
    # A student function that never returns: interrupted at the cell's limit, the test fails.
    _cell("spin(torch.ones(1))", "endless", kind="test"),
    # The same kernel serves the next test cell.
    _cell("assert torch.equal(double(torch.ones(3)), torch.full((3,), 2.0))", "after_endless", kind="test"),
    # 4 MB back where 1 MiB is allowed: the call fails, the grader never decodes it.
    _cell("huge()", "too_large", kind="test"),
    _cell("assert torch.equal(double(torch.ones(2)), torch.full((2,), 2.0))", "after_too_large", kind="test"),
    # The student's traceback is shown when the test fails because of it, not when the test expects it.
    _cell("try:\n    refuses(-1)\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError('must refuse')",
          "expected_raise", kind="test"),
    _cell("refuses(3)", "unexpected_raise", kind="test"),
]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    config = Config()
    config.GuardedExecute.timeout = CELL_TIMEOUT
    config.GuardedExecute.notebook_timeout = 300
    config.TrustedExecute.max_crossing_bytes = 1024 * 1024
    nb = execute_step(TrustedExecute, [c.copy() for c in CELLS], tmp_path_factory.mktemp("nb"), config)
    return {c.metadata.nbgrader["grade_id"]: c for c in nb.cells}


def _errors(cell):
    return [o for o in cell.outputs if o.output_type == "error"]


def _text(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_many_calls_pass_with_the_students_output_in_order_with_the_tests(executed):
    cell = executed["many_calls"]
    assert not _errors(cell), json.dumps(cell.outputs)[:2000]
    text = _text(cell)
    assert text.count("student says") == 200, text[:500]
    # What the test printed before a call comes before what the call printed (they travel on two channels).
    assert text.index("before") < text.index("student says 1\n") < text.index("student says 200\n")
    assert text.index("student says 100\n") < text.index("middle") < text.index("student says 101\n")
    assert "after" in text


def test_an_endless_student_function_is_interrupted_and_fails_only_its_test(executed):
    cell = executed["endless"]
    assert _errors(cell), "a call that never returned cannot pass"
    assert "interrupted" in _text(cell) + json.dumps(cell.outputs), json.dumps(cell.outputs)[:2000]
    assert not _errors(executed["after_endless"]), json.dumps(executed["after_endless"].outputs)[:2000]


def test_a_reply_over_the_size_limit_fails_its_test_and_the_next_cell_is_served(executed):
    cell = executed["too_large"]
    errors = _errors(cell)
    assert errors and "too large" in errors[0]["evalue"], json.dumps(cell.outputs)[:2000]
    assert not _errors(executed["after_too_large"]), json.dumps(executed["after_too_large"].outputs)[:2000]


def test_test_cells_carry_no_execute_result(executed):
    for grade_id in ("many_calls", "endless", "after_endless", "too_large", "after_too_large"):
        assert all(o.output_type != "execute_result" for o in executed[grade_id].outputs), grade_id


def test_the_students_traceback_is_shown_only_when_the_test_fails_with_it(executed):
    expected = executed["expected_raise"]
    assert not _errors(expected), json.dumps(expected.outputs)[:2000]
    assert "Traceback" not in json.dumps(expected.outputs), "a test that expects the error shows no traceback"
    failed = executed["unexpected_raise"]
    assert _errors(failed) and "negative sizes are not allowed" in _errors(failed)[0]["evalue"]
    text = _text(failed)
    assert "in your code" in text and "in refuses" in text and "raise ValueError" in text, text


@pytest.mark.parametrize("warm", [True, False], ids=["warm-parent-preloads", "cold-kernel-loads"])
def test_the_harness_is_in_every_kernel_before_the_notebook_runs(tmp_path, monkeypatch, warm):
    """A warm parent loads the harness once before forking (no execute request per notebook); a cold
    kernel gets it by an execute request before the first cell. Either way the tests can call the
    student's functions, and the student's first cell already finds it loaded."""
    from torchsteps.sandbox.grader_process import harness_bootstrap

    executed_sources = []
    original = TrustedExecute.execute_cell

    def recording(self, cell, *args, **kwargs):
        executed_sources.append(cell.source)
        return original(self, cell, *args, **kwargs)

    monkeypatch.setattr(TrustedExecute, "execute_cell", recording)
    config = Config()
    config.GuardedExecute.timeout = CELL_TIMEOUT
    config.SandboxedKernelManager.warm_start = warm
    cells = [
        _cell("import torch", "setup", kind="setup"),
        _cell("import builtins\nloaded = hasattr(builtins.__torchsteps_harness__, 'serve')\n"
              "def double(x):\n    return x * 2\n", "answer", kind="answer"),
        _cell("assert loaded\nassert torch.equal(double(torch.ones(3)), torch.full((3,), 2.0))", "calls", kind="test"),
    ]
    nb = execute_step(TrustedExecute, cells, tmp_path, config)
    assert not _errors(nb.cells[2]), json.dumps(nb.cells[2].outputs)[:2000]
    assert (harness_bootstrap() in executed_sources) is not warm, executed_sources
