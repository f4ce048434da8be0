"""The students' self-check of the course "First steps with PyTorch": ``pytest --selfcheck``.

A pytest plugin (:mod:`torchsteps_selfcheck.plugin`) that runs the visible tests of the course's
notebooks; the course (notebooks, exercises, points) is read from the release notebooks
(:mod:`torchsteps_selfcheck.course`).
"""
