"""Fast tier: one call from the grader to the harness, in this process (no kernel, no socket, no sandbox).

The grader's :meth:`Grader.call` encodes the arguments, the harness's :func:`call` runs the "student's"
function and answers with the result and the arguments after the call; the grader copies what changed
into its own objects. Here ``Grader.request`` hands the payload straight to the harness.
"""

from __future__ import annotations

import builtins
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from torchsteps.sandbox import crossing, grader


@pytest.fixture
def wired(monkeypatch):
    """``(grader, namespace, replies)``: a Grader whose requests the harness answers; ``replies`` keeps each reply."""
    monkeypatch.setitem(sys.modules, "_torchsteps_crossing", crossing)  # its name inside the sandbox
    spec = importlib.util.spec_from_file_location("_torchsteps_harness", Path(crossing.__file__).with_name("harness.py"))
    harness = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "_torchsteps_harness", harness)
    # Loading the harness sets builtins.__torchsteps_harness__; undone after the test (absent before it).
    monkeypatch.setattr(builtins, "__torchsteps_harness__", None, raising=False)
    spec.loader.exec_module(harness)
    namespace: dict = {}
    harness._user_ns = lambda: namespace
    replies = []

    class Wired(grader.Grader):
        def request(self, op, name, payload):
            reply = crossing.loads(harness.call(name, payload))
            replies.append(reply)
            return reply

    return Wired(link=None), namespace, replies


def test_changes_to_the_arguments_come_back_into_the_graders_objects(wired):
    g, ns, _ = wired

    def student(t, arrays, *, into):
        t.mul_(2)
        arrays[0][0] = 9.0
        arrays[1].append("x")
        into.add_(1)
        return t.sum()

    ns["student"] = student
    t, inner, into = torch.ones(3), [], torch.zeros(2)
    arrays = (np.zeros(2), inner)
    result = g.call("student", (t, arrays), {"into": into})
    torch.testing.assert_close(t, torch.full((3,), 2.0))
    assert arrays[0].tolist() == [9.0, 0.0] and inner == ["x"]  # inside a tuple: still written back
    torch.testing.assert_close(into, torch.ones(2))  # a keyword argument too
    torch.testing.assert_close(result, torch.tensor(6.0))


def test_the_requests_own_containers_answer_unchanged(wired):
    # The body, the args tuple, the kwargs dict and the context (with the global state sent on the first
    # call: RNG state tensors) never reach the function; encoding them after each call only cost time.
    g, ns, replies = wired
    ns["student"] = lambda t, **kw: t + 1
    g.call("student", (torch.ones(2),), {"k": [1]})
    after = replies[-1]["tree"]["reply"]["after"]
    full = [i for i, node in enumerate(after) if not (node.get("t") == "ref" and node.get("slot") == i)]
    kinds = [after[i]["t"] for i in full]
    assert kinds == ["list"], kinds  # the tensor, unchanged too, answers unchanged (see below)


def _sent_in_full(replies):
    """The kinds of the arguments the last reply sent in full (the others answered "unchanged")."""
    after = replies[-1]["tree"]["reply"]["after"]
    return [node["t"] for i, node in enumerate(after) if not (node.get("t") == "ref" and node.get("slot") == i)]


def _unchanged_call(t, a, p):
    return None


ARGUMENT_CHANGES = {
    "nothing": (_unchanged_call, []),
    "reads only": (lambda t, a, p: (t.sum(), a.copy(), p * 2), []),
    "tensor values": (lambda t, a, p: t.add_(1), ["tensor"]),
    "tensor requires_grad": (lambda t, a, p: t.requires_grad_(), ["tensor"]),
    "tensor resized": (lambda t, a, p: t.resize_(2), ["tensor"]),
    "tensor set to other memory": (lambda t, a, p: t.set_(torch.zeros(3, 2)), ["tensor"]),
    "ndarray values": (lambda t, a, p: a.__setitem__(0, 5.0), ["ndarray"]),
    "ndarray made read-only": (lambda t, a, p: setattr(a.flags, "writeable", False), ["ndarray"]),
    "parameter values": (lambda t, a, p: p.data.mul_(3), ["tensor"]),
    "a NaN's payload": (lambda t, a, p: t.view(torch.int32)[0, 0].fill_(0x7FC00001), ["tensor"]),
}


@pytest.mark.parametrize("case", ARGUMENT_CHANGES)
def test_an_argument_answers_unchanged_only_when_nothing_about_it_changed(wired, case):
    g, ns, replies = wired
    ns["student"], full = ARGUMENT_CHANGES[case]
    t = torch.tensor([[float("nan"), 1.0, 2.0], [3.0, 4.0, 5.0]]).T  # a non-contiguous view with a NaN
    a = np.arange(6.0)[1::2]  # a strided view into a larger buffer
    p = torch.nn.Parameter(torch.ones(2))
    expected_t, expected_a, expected_p = t.clone(), a.copy(), p.detach().clone()
    ns["student"](expected_t, expected_a, torch.nn.Parameter(expected_p)) if full else None
    g.call("student", (t, a, p), {})
    assert _sent_in_full(replies) == full
    # Whatever crossed, the grader's objects end as the student's copies did.
    if case == "tensor requires_grad":
        assert t.requires_grad
    elif case == "ndarray made read-only":
        assert not a.flags.writeable
    elif case in ("tensor resized", "tensor set to other memory"):
        assert t.shape == expected_t.shape
    elif case == "parameter values":
        torch.testing.assert_close(p.detach(), torch.full((2,), 3.0))
    else:
        assert crossing.same_values(t, expected_t) and crossing.same_values(a, expected_a)


def test_a_result_that_is_an_argument_stays_that_argument(wired):
    g, ns, _ = wired
    ns["student"] = lambda t: t.add_(1)
    t = torch.zeros(2)
    assert g.call("student", (t,), {}) is t
    torch.testing.assert_close(t, torch.ones(2))


def test_the_fixture_leaves_no_harness_in_builtins():
    assert not hasattr(builtins, "__torchsteps_harness__")  # runs after the tests above (file order)
