"""Parallel, sandboxed, warm-kernel grading gives exactly the scores of stock sequential nbgrader.

Uses the benchmark's own code (torchsteps.authoring.bench) on a small generated class: stock
`nbgrader autograde` in one copy of the course, `python -m torchsteps grade -j 2` in another.
"""

from __future__ import annotations

from torchsteps.authoring.bench import _course_copy, cell_scores, generate_class, grade_ours, grade_stock


def test_parallel_grading_matches_stock_nbgrader_cell_for_cell(tmp_path):
    generated = _course_copy(tmp_path / "generated", None, [], stock=True)
    students = generate_class(generated, 4, seed=7)
    stock = _course_copy(tmp_path / "stock", generated / "submitted", students, stock=True)
    ours = _course_copy(tmp_path / "ours", generated / "submitted", students, stock=False)
    grade_stock(stock)
    grade_ours(ours, jobs=2)
    a, b = cell_scores(stock), cell_scores(ours)
    assert len(a) == 4 * 29, "every test cell of every student graded by stock nbgrader"
    assert a == b
    assert 0.0 in b.values() and any(v > 0 for v in b.values()), "the generated class mixes right and wrong answers"
