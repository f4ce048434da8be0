"""Real nbgrader autograde of every catalogue entry (see conftest.graded).

- the instructor answers, and the instructor notebooks themselves, get full marks;
- the untouched release gets zero;
- each mistake loses exactly the points of the exercise it breaks, and nothing else;
- each alternative correct answer keeps full marks.
"""

from __future__ import annotations

import csv
import re

import pytest

from conftest import ASSIGNMENT, REPO
from torchsteps.authoring.catalogue_submissions import catalogue_class

_, EXPECTATIONS = catalogue_class(REPO, ASSIGNMENT)


@pytest.mark.parametrize("expect", EXPECTATIONS, ids=lambda e: f"{e.notebook}:{e.label}")
def test_catalogue_entry_scores(graded, expect):
    scores = graded["catalogue"].scores(expect.student, expect.notebook)
    assert scores, f"{expect.student}/{expect.notebook} was not graded"
    wrong = {
        grade_id: (score, max_score)
        for grade_id, (score, max_score) in scores.items()
        if score != (0.0 if grade_id in expect.failing else max_score)
    }
    assert not wrong, (
        f"{expect.label}: expected only {sorted(expect.failing) or 'no cells'} to score 0, "
        f"but these test cells scored otherwise (score, max): {wrong}"
    )


def test_only_the_two_bad_submissions_fail_each_with_a_reason(graded):
    course = graded["catalogue"]
    assert re.search(r"\b2 could not be graded", course.stdout), course.stdout[-3000:]
    with (course.root / "grades.csv").open(newline="", encoding="utf-8") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert rows["broken"]["status"] == "error"
    assert "not valid notebook JSON" in rows["broken"]["reason"] and ".ipynb" in rows["broken"]["reason"]
    assert rows["stranger"]["status"] == "error"
    assert "not on the roster" in rows["stranger"]["reason"]
    assert rows["solutions"]["status"] == "graded"
    assert float(rows["solutions"]["score"]) == float(rows["solutions"]["max_score"]) > 0
