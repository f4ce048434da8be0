"""torchsteps: the nbgrader course package "First steps with PyTorch".

Subpackages, by concern (a module imports only from the layers below its own):

- :mod:`torchsteps.authoring` -- the mistake catalogue, generated submissions (demo class, catalogue class), benchmark;
- :mod:`torchsteps.grading` -- the grading driver: course and roster, staged copies, one submission, the class, workers;
- :mod:`torchsteps.results` -- statuses, per-exercise rows and the CSV export, the terminal table, the HTML report;
- :mod:`torchsteps.nbgrader_plugins` -- every class ``nbgrader_config.py`` names (preprocessors, export and collector plugins);
- :mod:`torchsteps.sandbox` -- the bubblewrap kernel manager, the warm parent and the fork helper;
- :mod:`torchsteps.constants` -- facts more than one layer needs (ids, file names).
"""
