"""Every class that ``nbgrader_config.py`` names: nbgrader's own extension points, one job each.

- :mod:`.execute` -- ``GuardedExecute``: the execute step (sandboxed kernels, notebook time budget, output cap);
- :mod:`.preprocessors` -- ``StderrIsNotFailure``, ``DeduplicateGradeIds``, ``RestoreCellMetadata``, ``HideHiddenTests``;
- :mod:`.tamper` -- ``FlagTampering``: a reviewer's hint about code that patches what the tests rely on;
- :mod:`.export` -- ``ExerciseCsvExport``: the ``nbgrader export`` plugin;
- :mod:`.collect` -- the ``nbgrader zip_collect`` plugins for LMS downloads;
- :mod:`.hardening` -- ``harden(c)``: plugs all of the above into any course's ``nbgrader_config.py``.

May import :mod:`torchsteps.sandbox`, :mod:`torchsteps.results` (export rows) and :mod:`torchsteps.constants`.
"""
