"""A synthetic class that exercises the whole mistake catalogue in as few submissions as possible.

Grading cost is per notebook run, so the entries are packed: submission ``mistakes_K`` holds, in every
notebook, that notebook's K-th mistake and the instructor's answers everywhere else. Each notebook run
therefore checks exactly one mistake, and "loses exactly the points of its exercise, nothing else" can
be read off the scores of that notebook. Correct alternatives can share a notebook (all of them must
pass), so ``alternatives_K`` holds the K-th alternative of every exercise at once. Used by the test
suite and the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat

from .catalogue import by_notebook
from .demo_submissions import instructor_answers
from .submissions import fill_solutions

__all__ = ["Expectation", "catalogue_class"]


@dataclass(frozen=True)
class Expectation:
    """What autograding ``notebook`` of ``student`` must give: the test cells that fail, and why."""

    student: str
    notebook: str
    failing: frozenset[str]  # grade_ids of test cells that must score 0; all others full marks
    label: str  # "mistake <exercise>/<name>", "alternative ...", "solutions", "release"


def catalogue_class(course: Path, assignment: str) -> tuple[dict[str, dict[str, nbformat.NotebookNode]], list[Expectation]]:
    """``({student: {notebook: nb}}, expectations)`` covering every catalogue entry once.

    Students: ``solutions`` (instructor answers), ``source`` (the instructor notebooks themselves),
    ``release`` (untouched, everything fails), ``alternatives_K`` and ``mistakes_K``.
    """
    import torch

    cuda = torch.cuda.is_available()
    students: dict[str, dict[str, nbformat.NotebookNode]] = {}
    expectations: list[Expectation] = []
    for name, catalogue in by_notebook().items():
        source_nb = nbformat.read(str(course / "source" / assignment / f"{name}.ipynb"), as_version=4)
        release_nb = nbformat.read(str(course / "release" / assignment / f"{name}.ipynb"), as_version=4)
        solutions = instructor_answers(source_nb)
        all_tests = frozenset(t for e in catalogue.exercises for t in e.test_ids)

        def add(student, nb, failing, label):
            students.setdefault(student, {})[name] = nb
            expectations.append(Expectation(student, name, frozenset(failing), label))

        add("solutions", fill_solutions(release_nb, solutions), (), "instructor answers")
        add("source", source_nb, (), "instructor notebook as submitted")
        add("release", release_nb, all_tests, "untouched release")
        rounds = max((len(e.alternatives) for e in catalogue.exercises), default=0)
        for k in range(rounds):
            answers = dict(solutions)
            names = []
            for e in catalogue.exercises:
                if k < len(e.alternatives):
                    answers[e.solution_id] = e.alternatives[k].code
                    names.append(f"{e.solution_id}/{e.alternatives[k].name}")
            add(f"alternatives_{k}", fill_solutions(release_nb, answers), (), "alternatives " + ", ".join(names))
        mistakes = [(e, m) for e in catalogue.exercises for m in e.mistakes if m.caught_on_cuda or not cuda]
        for k, (e, m) in enumerate(mistakes):
            answers = dict(solutions, **{e.solution_id: m.code})
            add(f"mistakes_{k:02d}", fill_solutions(release_nb, answers), e.test_ids, f"mistake {e.solution_id}/{m.name}")
    return students, expectations
