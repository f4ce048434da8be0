"""Tamper rules (torchsteps.nbgrader_plugins.tamper.find_tampering) on source text: no kernel, no nbgrader run."""

from __future__ import annotations

import pytest

from conftest import ASSIGNMENT, REPO
from torchsteps.nbgrader_plugins.tamper import HELPERS_FILE, find_tampering, helper_names

CHECK_NAMES = helper_names(REPO / "source" / ASSIGNMENT / HELPERS_FILE)

HONEST = [
    "import torch\nimport numpy as np\n\ndef to_tensor(a):\n    return torch.from_numpy(a)\n",
    "def pick_device():\n    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')\n",
    "x = torch.arange(6).reshape(2, 3)\nprint(x.T, x.dtype)\n",
]


@pytest.mark.parametrize("source", HONEST)
def test_ordinary_answers_are_not_flagged(source):
    assert find_tampering([(3, source)], CHECK_NAMES) == []


@pytest.mark.parametrize("source, line", [
    ("import checks\nchecks.check_tensor = lambda *a, **k: None\n", 2),
    ("from checks import check_tensor\n\ndef check_tensor(*a, **k):\n    pass\n", 3),
    ("import builtins\nbuiltins.isinstance = lambda *a: True\n", 2),
    ("import torch\ntorch.testing.assert_close = print\n", 2),
    ("class Anything:\n    def __eq__(self, other):\n        return True\n", 2),
])
def test_patching_what_the_tests_rely_on_is_flagged_at_its_line(source, line):
    findings = find_tampering([(7, source)], CHECK_NAMES)
    assert findings, "not flagged"
    assert (findings[0].cell, findings[0].line) == (7, line)


def test_aliases_carry_over_from_earlier_cells():
    findings = find_tampering([(1, "import checks as c\n"), (2, "c.check_value = None\n")], CHECK_NAMES)
    assert [(f.cell, f.line) for f in findings] == [(2, 1)]


def test_helper_names_are_the_helpers_all(tmp_path):
    assert {"check_tensor", "check_shares_memory"} <= CHECK_NAMES
    (tmp_path / "checks.py").write_text("__all__ = ['check_a', 'check_b']\ndef check_a(): pass\n")
    assert helper_names(tmp_path / "checks.py") == {"check_a", "check_b"}
    assert helper_names(tmp_path / "missing.py") == frozenset()


def test_helper_names_follow_the_files_content_not_its_path(tmp_path):
    # The names are remembered per content (one parse per class): a changed file gives its new names.
    helpers = tmp_path / "checks.py"
    helpers.write_text("__all__ = ['check_a']\n")
    assert helper_names(helpers) == {"check_a"}
    helpers.write_text("__all__ = ['check_b', 'check_c']\n")
    assert helper_names(helpers) == {"check_b", "check_c"}
    helpers.write_text("__all__ = [\n")  # does not parse
    assert helper_names(helpers) == frozenset()
