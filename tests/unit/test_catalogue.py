"""The mistake catalogue is complete and consistent with the notebooks (no kernel needed)."""

from __future__ import annotations

import ast

import nbformat
import pytest

from conftest import ASSIGNMENT, REPO
from torchsteps.authoring.catalogue import load_all
from torchsteps.authoring.demo_submissions import instructor_answers
from torchsteps.authoring.submissions import fill_solutions, grade_ids, solution_ids

KINDS = {"dtype", "shape", "shares-memory", "mutates-input", "hard-coded", "rounding", "legacy-constructor",
         "device", "raises", "hides-error", "wrong-values",
         "layout", "zero-dim", "empty", "precision", "identity", "availability"}
CATALOGUES = load_all()


def test_every_source_notebook_has_a_catalogue():
    notebooks = {p.stem for p in (REPO / "source" / ASSIGNMENT).glob("*.ipynb")}
    assert notebooks == {c.notebook for c in CATALOGUES}


@pytest.mark.parametrize("catalogue", CATALOGUES, ids=lambda c: c.notebook)
def test_catalogue_entries(catalogue):
    source = nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{catalogue.notebook}.ipynb"), as_version=4)
    solutions = instructor_answers(source)
    assert [e.solution_id for e in catalogue.exercises] == solution_ids(source), "exercises in notebook order"
    tests = set(grade_ids(source))
    covered = [t for e in catalogue.exercises for t in e.test_ids]
    assert sorted(covered) == sorted(tests), "every test cell belongs to exactly one exercise"
    for exercise in catalogue.exercises:
        assert len(exercise.mistakes) >= 3, f"{exercise.solution_id}: at least 3 mistakes"
        assert len(exercise.alternatives) >= 2, f"{exercise.solution_id}: at least 2 alternatives"
        names = [v.name for v in exercise.mistakes + exercise.alternatives]
        assert len(names) == len(set(names)), f"{exercise.solution_id}: variant names must be unique"
        codes = [v.code.strip() for v in exercise.mistakes + exercise.alternatives]
        assert len(codes) == len(set(codes)), f"{exercise.solution_id}: two variants have the same code"
        for variant in exercise.mistakes + exercise.alternatives:
            assert variant.code.strip() != solutions[exercise.solution_id].strip()
            ast.parse(variant.code)
        for mistake in exercise.mistakes:
            assert mistake.kind in KINDS, f"{exercise.solution_id}/{mistake.name}: unknown kind {mistake.kind!r}"
        assert all(a.kind == "correct" for a in exercise.alternatives)
    # fill_solutions accepts every entry
    for exercise in catalogue.exercises:
        fill_solutions(source, {exercise.solution_id: exercise.mistakes[0].code})


def test_the_catalogue_has_hard_coded_and_raising_mistakes():
    kinds = {m.kind for c in CATALOGUES for e in c.exercises for m in e.mistakes}
    assert {"hard-coded", "raises"} <= kinds


def test_the_catalogue_has_every_kind_of_input_the_texts_promise():
    # issue 12: non-contiguous views, 0-dim and empty inputs, values float32 cannot hold, new objects,
    # device availability, and module parameters' requires_grad (a mutated input)
    kinds = {m.kind for c in CATALOGUES for e in c.exercises for m in e.mistakes}
    assert {"layout", "zero-dim", "empty", "precision", "identity", "availability", "mutates-input"} <= kinds
    names = {(e.solution_id, m.name) for c in CATALOGUES for e in c.exercises for m in e.mistakes}
    assert {("to_tensor_copy", "item-for-0-dim"), ("add_one_shared", "ascontiguous"), ("round_to_int", "float32-first"),
            ("pick_device", "cuda-branch-not-assigned"), ("pick_device", "never-checks-cuda"),
            ("apply_layer", "freezes-layer")} <= names
    alternatives = {(e.solution_id, a.name) for c in CATALOGUES for e in c.exercises for a in e.alternatives}
    assert ("mean_as_float", "mean-of-row-means") in alternatives
