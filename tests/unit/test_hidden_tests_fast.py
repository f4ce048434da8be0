"""The fast tier of the grading tests: every test cell run in this process, without kernels or nbgrader.

- every catalogue mistake fails its exercise's test cells, every alternative passes them, and the instructor
  answers pass every test cell (the slow tier, tests/test_autograde.py, grades the same with real nbgrader);
- the test cells give the same verdicts whatever a student's cell did to the notebook's namespace or to
  global library state: ``from numpy import *``, ``from torch import *``, ``torch.set_default_dtype``,
  warnings turned into errors, a changed global RNG, print options, autograd switched off;
- the test cells keep to the contract of the exercise texts: each test cell prints that its visible checks
  passed, binds only ``_``-prefixed names, and never calls a builtin that a star import shadows.
"""

from __future__ import annotations

import ast
import builtins
import re

import nbformat
import numpy as np
import pytest
import torch

from conftest import ASSIGNMENT, REPO
from inprocess import read_source, run_graded_cells
from torchsteps.authoring.catalogue import load_all
from torchsteps.authoring.demo_submissions import instructor_answers

CATALOGUES = load_all()
NOTEBOOKS = [c.notebook for c in CATALOGUES]


def _entries():
    for catalogue in CATALOGUES:
        for exercise in catalogue.exercises:
            for variant in exercise.mistakes + exercise.alternatives:
                yield pytest.param(catalogue.notebook, exercise, variant,
                                   id=f"{catalogue.notebook}:{exercise.solution_id}/{variant.name}")


@pytest.mark.parametrize("notebook, exercise, variant", list(_entries()))
def test_catalogue_entry_in_process(notebook, exercise, variant):
    nb = read_source(notebook)
    answers = dict(instructor_answers(nb), **{exercise.solution_id: variant.code})
    results = run_graded_cells(nb, answers, only=set(exercise.test_ids))
    assert set(results) == set(exercise.test_ids)
    for grade_id, result in results.items():
        if variant.kind == "correct":
            assert result.passed, f"alternative {variant.name} fails {grade_id}: {result.message}"
        else:
            assert not result.passed, f"mistake {variant.name} ({variant.kind}) passes {grade_id}"


# Student habits from real notebooks. Each comes with answers that are correct under that habit: where the
# instructor's answer relies on the default float dtype or on the builtin `bool`, the student wrote it out.
_EXPLICIT_FLOAT32 = {
    "scalar_tensor": "def scalar_tensor(x):\n    return torch.tensor(x, dtype=torch.float32) if type(x) is float else torch.tensor(x)\n",
    "ramp": "def ramp(start, stop, count):\n    return torch.linspace(start, stop, count, dtype=torch.float32)\n",
    "seeded_noise": "def seeded_noise(seed, shape):\n    g = torch.Generator().manual_seed(seed)\n"
                    "    return torch.randn(shape, generator=g, dtype=torch.float32)\n",
    "scale_counts": "def scale_counts(counts, factor):\n    return counts.to(torch.float32) * factor\n",
}
_BUILTIN_BOOL = {
    "all_in_range": "import builtins\ndef all_in_range(x, low, high):\n"
                    "    return builtins.bool(((x >= low) & (x <= high)).all())\n",
}
HABITS = {
    "from-numpy-star": ("from numpy import *", _BUILTIN_BOOL),
    "from-torch-star": ("from torch import *", _BUILTIN_BOOL),
    "default-float64": ("torch.set_default_dtype(torch.float64)", _EXPLICIT_FLOAT32),
    "warnings-as-errors": ("import warnings\nwarnings.simplefilter('error')", {}),
    "global-seed-and-print-options": ("torch.manual_seed(123)\ntorch.set_printoptions(precision=1)\n"
                                      "np.set_printoptions(precision=1, legacy='1.13')", {}),
    "grad-disabled": ("torch.set_grad_enabled(False)", {}),
}


@pytest.mark.parametrize("habit", [None, *HABITS])
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_instructor_answers_pass_every_test_cell(notebook, habit):
    nb = read_source(notebook)
    prelude, overrides = HABITS[habit] if habit else ("", {})
    answers = dict(instructor_answers(nb), **{k: v for k, v in overrides.items() if k in instructor_answers(nb)})
    results = run_graded_cells(nb, answers, prelude=prelude)
    assert results, "no test cell ran"
    failed = {k: r.message for k, r in results.items() if not r.passed}
    assert not failed, failed
    for grade_id, result in results.items():
        assert "Visible checks passed." in result.stdout, f"{grade_id} does not say that its visible checks passed"


def test_a_test_cell_leaves_library_state_as_the_student_set_it():
    nb = read_source("03_dtypes_and_casting")
    probe = ("torch.set_default_dtype(torch.float64)\n"
             "import builtins\n"
             "def sum_dtype(a, b):\n    return torch.result_type(a, b)\n")
    answers = dict(instructor_answers(nb), sum_dtype=probe)
    after = "assert torch.get_default_dtype() == torch.float64, 'the test cell changed the default dtype'\n"
    nb = nbformat.from_dict(nb)
    nb.cells.append(nbformat.v4.new_code_cell(after, metadata={"nbgrader": {"grade": True, "grade_id": "probe", "points": 0}}))
    results = run_graded_cells(nb, answers, only={"test_sum_dtype", "probe"})
    assert results["test_sum_dtype"].passed, results["test_sum_dtype"].message
    assert results["probe"].passed, results["probe"].message


# --- the test cells themselves --------------------------------------------------------------------

SHADOWED = frozenset(  # builtins that `from numpy import *` or `from torch import *` replace
    name for module in (np, torch) for name in getattr(module, "__all__", dir(module))
    if name in dir(builtins) and not name.startswith("_")
)


def _test_cells():
    for notebook in NOTEBOOKS:
        for cell in read_source(notebook).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution"):
                yield pytest.param(notebook, cell, id=f"{notebook}:{meta['grade_id']}")


def _star(module):
    namespace = {}
    exec(f"from {module} import *", namespace)
    return {k for k in namespace if k in dir(builtins)}


def test_the_shadowed_builtins_are_the_ones_star_imports_replace():
    assert SHADOWED >= (_star("numpy") | _star("torch")) - {"__builtins__"}
    assert {"range", "bool", "float", "int", "min", "max", "sum", "round", "abs", "all", "any"} <= SHADOWED


@pytest.mark.parametrize("notebook, cell", list(_test_cells()))
def test_test_cell_uses_no_shadowable_builtin_and_binds_only_private_names(notebook, cell):
    tree = ast.parse(cell.source)
    loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    assert not (loaded & SHADOWED), f"uses {sorted(loaded & SHADOWED)}, which a star import can replace"
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {(a.asname or a.name).split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    bound |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    public = {name for name in bound if not name.startswith("_")}
    assert not public, f"binds {sorted(public)} in the student's namespace"
    visible = cell.source.split("### BEGIN HIDDEN TESTS")[0]
    assert 'print("Visible checks passed.")' in visible


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_exercise_has_a_statement_with_its_points_and_a_docstring(notebook):
    nb = read_source(notebook)
    cells = nb.cells
    for i, cell in enumerate(cells):
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("solution"):
            continue
        name = meta["grade_id"]
        test = next(c for c in cells[i + 1:] if c.metadata.get("nbgrader", {}).get("grade_id") == f"test_{name}")
        points = test.metadata.nbgrader["points"]
        statement = cells[i - 1]
        assert statement.cell_type == "markdown" and "### Exercise" in statement.source, f"{name}: no statement"
        unit = "point" if points == 1 else "points"
        assert re.search(rf"### Exercise \d+: .*\({points:g} {unit}\)", statement.source), f"{name}: points not stated"
        assert f"`{name}(" in statement.source or f"`{name}`" in statement.source, f"{name}: statement names another function"
        function = ast.parse(cell.source).body
        definition = next(n for n in function if isinstance(n, ast.FunctionDef) and n.name == name)
        assert ast.get_docstring(definition), f"{name}: no docstring"
