"""The mistake catalogue: plausible wrong answers and alternative correct answers for every graded exercise.

Each module in this package describes one notebook of the assignment with a module-level
``CATALOGUE = NotebookCatalogue(...)``. The test suite autogrades every entry with real nbgrader:
a mistake must lose exactly the points of its exercise's test cells, and an alternative must keep
full marks. The demo class in ``submitted/`` and the benchmark are built from the same entries.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field

__all__ = ["Variant", "Exercise", "NotebookCatalogue", "load_all", "by_notebook"]


@dataclass(frozen=True)
class Variant:
    """One answer to an exercise: the complete source of its solution cell.

    ``kind`` names the family of mistake (``"dtype"``, ``"shape"``, ``"shares-memory"``,
    ``"mutates-input"``, ``"hard-coded"``, ``"rounding"``, ``"legacy-constructor"``,
    ``"device"``, ``"raises"``, ``"hides-error"``, ``"wrong-values"``; and the input kinds an exercise text
    promises (issue 12): ``"layout"`` (fails on a transposed, permuted, sliced or expanded view),
    ``"zero-dim"``, ``"empty"``, ``"precision"`` (values where float32, float64 and int64 differ),
    ``"identity"`` (returns its input where a new object was asked for), ``"availability"`` (wrong for
    some combination of available GPUs)) or ``"correct"``.
    """

    name: str
    code: str
    kind: str = "correct"
    description: str = ""
    # False for a mistake that is right by accident on a grader with an NVIDIA GPU (answering
    # "cuda" without checking); the suite expects it to fail only where CUDA is missing.
    caught_on_cuda: bool = True


@dataclass(frozen=True)
class Exercise:
    """A graded exercise: one solution cell and the test cell(s) that grade it."""

    solution_id: str
    test_ids: tuple[str, ...]
    mistakes: tuple[Variant, ...] = field(default_factory=tuple)
    alternatives: tuple[Variant, ...] = field(default_factory=tuple)

    def mistake(self, name: str) -> Variant:
        return _find(self.mistakes, name, self.solution_id)

    def alternative(self, name: str) -> Variant:
        return _find(self.alternatives, name, self.solution_id)


@dataclass(frozen=True)
class NotebookCatalogue:
    """All exercises of one notebook; ``notebook`` is the file name without ``.ipynb``."""

    notebook: str
    exercises: tuple[Exercise, ...]

    def exercise(self, solution_id: str) -> Exercise:
        for exercise in self.exercises:
            if exercise.solution_id == solution_id:
                return exercise
        raise KeyError(f"{self.notebook}: no exercise with solution cell {solution_id!r}")


def _find(variants, name, where):
    for variant in variants:
        if variant.name == name:
            return variant
    raise KeyError(f"{where}: no variant named {name!r}")


def load_all() -> list[NotebookCatalogue]:
    """Every notebook's catalogue, sorted by notebook name."""
    catalogues = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "CATALOGUE"):
            catalogues.append(module.CATALOGUE)
    return sorted(catalogues, key=lambda c: c.notebook)


def by_notebook() -> dict[str, NotebookCatalogue]:
    """``{notebook name: catalogue}`` for every notebook."""
    return {c.notebook: c for c in load_all()}
