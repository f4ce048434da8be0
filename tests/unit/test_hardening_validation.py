"""``harden`` validates each notebook once, after the last preprocessor (``c.Exporter.optimistic_validation``):
a notebook a step made invalid is still refused, by nbgrader's exporter and by the feedback exporter."""

from __future__ import annotations

import nbformat
import pytest
from nbconvert.exporters import NotebookExporter
from nbconvert.preprocessors import Preprocessor
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from torchsteps.nbgrader_plugins.feedback import FeedbackExporter
from torchsteps.nbgrader_plugins.hardening import harden


class BreaksTheNotebook(Preprocessor):
    def preprocess(self, nb, resources):
        nb.cells[0]["outputs"] = [{"output_type": "no such type"}]
        return nb, resources


class Harmless(Preprocessor):
    calls = 0

    def preprocess(self, nb, resources):
        type(self).calls += 1
        return nb, resources


@pytest.mark.parametrize("exporter_class", [NotebookExporter, FeedbackExporter])
def test_an_invalid_notebook_is_still_refused(exporter_class):
    config = harden(Config())
    exporter = exporter_class(config=config)
    assert exporter.optimistic_validation
    exporter.register_preprocessor(BreaksTheNotebook(), enabled=True)
    exporter.register_preprocessor(Harmless(), enabled=True)  # the broken notebook passes through later steps
    with pytest.raises(nbformat.ValidationError):
        exporter.from_notebook_node(new_notebook(cells=[new_code_cell("1 + 1")]))


def _validations(config, steps, monkeypatch) -> int:
    calls = []
    original = nbformat.validate
    monkeypatch.setattr(nbformat, "validate", lambda nb, *a, **k: calls.append(1) or original(nb, *a, **k))
    exporter = NotebookExporter(config=config)
    for _ in range(steps):
        exporter.register_preprocessor(Harmless(), enabled=True)
    exporter.from_notebook_node(new_notebook(cells=[new_code_cell("1 + 1")]))
    monkeypatch.setattr(nbformat, "validate", original)
    return len(calls)


def test_validations_do_not_grow_with_the_number_of_steps(monkeypatch):
    hardened = [_validations(harden(Config()), steps, monkeypatch) for steps in (1, 10)]
    stock = [_validations(Config(), steps, monkeypatch) for steps in (1, 10)]
    assert hardened[0] == hardened[1]
    assert stock[1] == stock[0] + 9  # stock: one more validation per step
