"""Tools for the course's authors and maintainers, never shipped to students.

- :mod:`.catalogue` -- per exercise, plausible mistakes and alternative correct answers;
- :mod:`.submissions` -- fill a release notebook's answer cells with given code;
- :mod:`.demo_submissions` -- the demo class in ``submitted/`` and its expected totals;
- :mod:`.catalogue_submissions` -- one generated student per catalogue entry, for the autograde tests;
- :mod:`.bench` -- stock ``nbgrader autograde`` against ours on generated students.

May import everything below it (:mod:`torchsteps.grading` and the rest).
"""
