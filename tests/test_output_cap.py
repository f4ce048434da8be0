"""The output cap counts every message kind, per cell and per notebook (issue 11).

One real sandboxed kernel runs one notebook through GuardedExecute (the execute step of autograding) with
small caps: 20,000 characters per cell, 150,000 per notebook. Each of the first eight cells sends one kind
of output far over the cell cap (about 124,000 kept in all); two more fill the notebook cap; then small
outputs come after it. Upstream, update_display_data was not counted
and an error's value and traceback were never trimmed.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell
from traitlets.config import Config

from conftest import execute_step
from torchsteps.nbgrader_plugins.execute import GuardedExecute
from torchsteps.nbgrader_plugins.limits import TRUNCATED_MARK, message_size

CELL_CAP, NOTEBOOK_CAP = 20_000, 150_000
BIG = 1_000_000

CELLS = {
    "stream": f"print('s' * {BIG})",
    "stderr": f"import sys\nsys.stderr.write('e' * {BIG})",
    "display_data": f"from IPython.display import display, HTML\ndisplay(HTML('h' * {BIG}))",
    "many_displays": "for _ in range(100):\n    display(HTML('m' * 5000))",
    "execute_result": f"'r' * {BIG}",
    "update_display_data": "h = display('start', display_id=True)\nfor _ in range(50):\n    h.update('u' * 100_000)",
    "error_value": f"raise ValueError('v' * {BIG})",
    # 300 frames, each printing a 5,000-character source line: a 1.5 MB traceback.
    "error_traceback": "def f(n):\n    return f(n + 1) if n < 300 else 1 / 0  # " + "t" * 5000 + "\nf(0)",
    "fill_1": f"print('f' * {BIG})",
    "fill_2": f"print('f' * {BIG})",
    # The notebook cap is passed by now: small outputs are dropped too, errors still kept.
    "after_cap": "print('small')",
    "error_after_cap": "raise KeyError('still failing')",
}


def _size(output) -> int:
    kind = output["output_type"]
    msg_type = "stream" if kind == "stream" else kind
    return message_size(msg_type, dict(output))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    config = Config()
    config.GuardedExecute.max_cell_output_bytes = CELL_CAP
    config.GuardedExecute.max_output_bytes = NOTEBOOK_CAP
    config.GuardedExecute.notebook_timeout = 300
    config.GuardedExecute.timeout = 120
    nb = execute_step(GuardedExecute, [new_code_cell(src) for src in CELLS.values()], tmp_path_factory.mktemp("nb"), config)
    return dict(zip(CELLS, nb.cells)), nb


def _text(cell) -> str:
    return json.dumps(cell.outputs)


@pytest.mark.parametrize("kind", list(CELLS)[:8])
def test_each_kind_is_capped_per_cell_with_a_visible_marker(executed, kind):
    cells, _ = executed
    cell = cells[kind]
    assert "max_cell_output_bytes" in _text(cell), "the cell cap, not the notebook's, must have acted"
    # What the kernel sent (about 1 MB) is cut to the cell cap, plus the marker and a shortened error.
    assert sum(_size(o) for o in cell.outputs) <= CELL_CAP + 3_000, (kind, sum(_size(o) for o in cell.outputs))
    assert TRUNCATED_MARK in _text(cell), kind


def test_errors_over_the_cap_still_fail_the_cell(executed):
    cells, _ = executed
    for kind, ename in (("error_value", "ValueError"), ("error_traceback", "ZeroDivisionError"), ("error_after_cap", "KeyError")):
        errors = [o for o in cells[kind].outputs if o.output_type == "error"]
        assert [e.ename for e in errors] == [ename], (kind, errors)


def test_output_under_the_cap_is_kept(executed):
    cells, _ = executed
    first = [o for o in cells["stream"].outputs if o.output_type == "stream" and o.name == "stdout"]
    assert first and first[0].text.startswith("s" * 1000) and len(first[0].text) <= CELL_CAP


def test_notebook_cap_drops_later_output_with_a_marker(executed):
    cells, nb = executed
    assert "small" not in _text(cells["after_cap"])
    assert "max_output_bytes" in _text(cells["after_cap"])
    assert "max_output_bytes" in _text(cells["fill_2"])
    total = sum(_size(o) for c in nb.cells for o in c.get("outputs", []))
    assert total <= NOTEBOOK_CAP + 10 * 3_000, total
    assert len(nbformat.writes(nb)) < NOTEBOOK_CAP * 2


def test_display_updates_count(executed):
    cells, _ = executed
    shown = [o for o in cells["update_display_data"].outputs if o.output_type == "display_data"]
    # Updates past the cap are dropped: the display keeps its last update that fitted (or its start).
    assert shown and len(json.dumps(shown)) <= CELL_CAP + 1_000
