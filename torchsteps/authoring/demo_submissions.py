"""The demo class in ``submitted/``: students built from the release and the mistake catalogue.

Each demo student follows a *profile*: the instructor's answers, an alternative correct style, a
blank notebook, half done, or one kind of mistake wherever the catalogue has one. Because the
catalogue says which exercise each mistake breaks, the expected grades follow from the profiles
(:func:`expected_scores`), and the test suite checks ``grades.csv`` against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat

from .catalogue import Exercise, NotebookCatalogue, by_notebook
from ..grading.course import read_student_file
from .submissions import fill_solutions

__all__ = ["Profile", "PROFILES", "instructor_answers", "answers_for", "expected_scores", "write_demo_class"]


@dataclass(frozen=True)
class Profile:
    """How a demo student answers: ``style`` is solution | alternative | blank | partial | mistakes."""

    style: str
    alternative: int = 0
    kinds: tuple[str, ...] = ()
    summary: str = ""


# The kinds no named profile takes go to the last student, so every kind appears in the class.
_OTHER_KINDS = "*"

PROFILES: dict[str, Profile] = {
    "ada": Profile("solution", summary="the instructor's answers"),
    "ben": Profile("alternative", alternative=0, summary="correct, first alternative style"),
    "cleo": Profile("alternative", alternative=1, summary="correct, second alternative style"),
    "dev": Profile("blank", summary="submitted the release untouched"),
    "eli": Profile("partial", summary="first half of each notebook done, the rest blank"),
    "fay": Profile("mistakes", kinds=("dtype",), summary="wrong dtypes"),
    "gus": Profile("mistakes", kinds=("shares-memory",), summary="copies where memory is shared, and the reverse"),
    "hana": Profile("mistakes", kinds=("hard-coded",), summary="answers hard-coded from the visible checks"),
    "ivo": Profile("mistakes", kinds=("mutates-input", "rounding"), summary="mutates inputs; truncates instead of rounding"),
    "jo": Profile("mistakes", kinds=("raises",), summary="code that raises"),
    "kim": Profile("mistakes", kinds=("shape", "legacy-constructor", "device"), summary="shapes, torch.Tensor(3), devices"),
    "lou": Profile("mistakes", kinds=(_OTHER_KINDS,), summary="every other kind of mistake"),
}


def _claimed_kinds() -> set[str]:
    return {k for p in PROFILES.values() for k in p.kinds if k != _OTHER_KINDS}


def instructor_answers(source_nb: nbformat.NotebookNode) -> dict[str, str]:
    """``{grade_id: code}`` of the instructor's solution cells, without the SOLUTION marker lines."""
    answers = {}
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            lines = [line for line in cell.source.splitlines() if "BEGIN SOLUTION" not in line and "END SOLUTION" not in line]
            answers[meta["grade_id"]] = "\n".join(lines)
    return answers


def _mistake_for(exercise: Exercise, kinds: tuple[str, ...]):
    for mistake in exercise.mistakes:
        if mistake.kind in kinds or (_OTHER_KINDS in kinds and mistake.kind not in _claimed_kinds()):
            return mistake
    return None


def answers_for(profile: Profile, catalogue: NotebookCatalogue, source_nb, cuda: bool = False) -> tuple[dict[str, str], set[str]]:
    """The answers a profile writes in one notebook, and the solution ids it gets wrong (or leaves blank).

    With ``cuda``, a mistake that is right by accident on a CUDA grader does not count as wrong.
    """
    solutions = instructor_answers(source_nb)
    exercises = catalogue.exercises
    if profile.style == "solution":
        return solutions, set()
    if profile.style == "blank":
        return {}, {e.solution_id for e in exercises}
    if profile.style == "partial":
        done = exercises[: (len(exercises) + 1) // 2]
        return {e.solution_id: solutions[e.solution_id] for e in done}, {e.solution_id for e in exercises[len(done):]}
    if profile.style == "alternative":
        answers = dict(solutions)
        for e in exercises:
            if e.alternatives:
                answers[e.solution_id] = e.alternatives[profile.alternative % len(e.alternatives)].code
        return answers, set()
    answers, wrong = dict(solutions), set()
    for e in exercises:
        mistake = _mistake_for(e, profile.kinds)
        if mistake is not None:
            answers[e.solution_id] = mistake.code
            if mistake.caught_on_cuda or not cuda:
                wrong.add(e.solution_id)
    return answers, wrong


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def _points(source_nb) -> dict[str, float]:
    return {
        c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader.get("points", 0))
        for c in source_nb.cells
        if c.metadata.get("nbgrader", {}).get("grade")
    }


def expected_scores(course: Path, assignment: str) -> dict[str, dict[str, float]]:
    """``{student: {notebook: points}}`` that autograding the demo class must give."""
    import torch

    cuda = torch.cuda.is_available()
    scores: dict[str, dict[str, float]] = {}
    for name, catalogue in by_notebook().items():
        source_nb = _read(course / "source" / assignment / f"{name}.ipynb")
        points = _points(source_nb)
        for student, profile in PROFILES.items():
            _, wrong = answers_for(profile, catalogue, source_nb, cuda)
            lost = sum(points[t] for e in catalogue.exercises if e.solution_id in wrong for t in e.test_ids)
            scores.setdefault(student, {})[name] = sum(points.values()) - lost
    return scores


def write_demo_class(course: Path, assignment: str) -> list[Path]:
    """(Re)write ``submitted/<student>/<assignment>/*.ipynb`` for every demo profile.

    Raises:
        ValueError: if a profile's student is not on the course's roster CSV (``students.csv``).
    """
    roster = {row.get("id") for row in read_student_file(course)}
    missing = sorted(set(PROFILES) - roster)
    if missing:
        raise ValueError(f"demo students not on the roster (students.csv): {missing}")
    written = []
    for name, catalogue in by_notebook().items():
        source_nb = _read(course / "source" / assignment / f"{name}.ipynb")
        release_nb = _read(course / "release" / assignment / f"{name}.ipynb")
        for student, profile in PROFILES.items():
            answers, _ = answers_for(profile, catalogue, source_nb)
            out = course / "submitted" / student / assignment / f"{name}.ipynb"
            out.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(fill_solutions(release_nb, answers), str(out))
            written.append(out)
    return written
