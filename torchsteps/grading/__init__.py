"""Grading a class: nbgrader's Python API driven submission by submission, never stopped by one.

- :mod:`.course` -- the course's config and roster, an ``NbGraderAPI`` for it;
- :mod:`.staging` -- a working copy of each submission that nbgrader can read (``submitted/`` is never written);
- :mod:`.driver` -- one submission (autograde + feedback, a status and a reason), then the whole class;
- :mod:`.parallel` -- a pool of worker processes, each grading with its own ``NbGraderAPI``.

May import :mod:`torchsteps.results`, :mod:`torchsteps.nbgrader_plugins`, :mod:`torchsteps.sandbox`, :mod:`torchsteps.constants`.
"""
