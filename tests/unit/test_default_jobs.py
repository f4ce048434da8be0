"""How many submissions are graded at once by default (``python -m torchsteps grade`` without ``-j``)."""

from __future__ import annotations

import os

from torchsteps.grading.parallel import default_jobs


def test_one_worker_per_usable_core_plus_one(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 5}, raising=False)
    assert default_jobs() == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert default_jobs() == 2


def test_counts_the_cores_this_process_may_use_not_the_machines():
    # A container limited to some cores sees all of them in os.cpu_count(); the affinity mask is what it gets.
    if hasattr(os, "sched_getaffinity"):
        assert default_jobs() == len(os.sched_getaffinity(0)) + 1
    else:
        assert default_jobs() == (os.cpu_count() or 1) + 1
