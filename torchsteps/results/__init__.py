"""What grading produced, for people: statuses, per-exercise rows and ``grades.csv``, the terminal table, the report.

- :mod:`.status` -- ``Status`` and ``SubmissionResult``, and the status file of a run;
- :mod:`.export` -- per-exercise rows read from the gradebook, ``grades.csv``;
- :mod:`.table` -- the students x exercises table in the terminal;
- :mod:`.report` -- the offline HTML report (rendered from ``templates/report.html.j2``).

Reads the gradebook and the autograded notebooks; imports nothing of torchsteps but :mod:`torchsteps.constants`.
"""
