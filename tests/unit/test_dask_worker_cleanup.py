"""A Dask worker that closes takes its sandboxes' folders with it (they hold a student's files)."""

from __future__ import annotations

import time
from pathlib import Path

from torchsteps.grading.dask_plugins import SandboxCleanup


def _start_a_sandbox(runtime_dir: str) -> str:
    from torchsteps.sandbox.folders import make_private_dir

    return str(make_private_dir(runtime_dir))  # what a warm parent does first when a task needs a kernel


def _eventually(condition, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_closing_a_worker_removes_its_sandbox_folders_and_only_then(tmp_path):
    from distributed import Client, LocalCluster

    # Worker processes with a nanny, as `dask worker` runs them.
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.register_plugin(SandboxCleanup())
        root = Path(client.submit(_start_a_sandbox, str(tmp_path), pure=False).result())
        assert (root / "work").is_dir()
        # Regression (review): a second `grade` on the same cluster registers the plugin again; replacing it
        # ran the old one's teardown, which ended the sandboxes of the first `grade`'s submissions.
        with Client(cluster) as second:
            second.register_plugin(SandboxCleanup())
        time.sleep(0.5)
        assert root.is_dir(), "registering the plugin again ended the worker's sandboxes"
        cluster.scale(0)  # the scheduler retires the worker, as `dask worker` does on SIGTERM
        assert _eventually(lambda: not root.exists()), "a closed worker left its sandbox folder behind"
