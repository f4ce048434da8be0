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


def test_closing_a_worker_removes_its_sandbox_folders(tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.register_plugin(SandboxCleanup())
        root = Path(client.submit(_start_a_sandbox, str(tmp_path), pure=False).result())
        assert (root / "work").is_dir()
        cluster.scale(0)  # the scheduler retires the worker, as `dask worker` does on SIGTERM
        assert _eventually(lambda: not root.exists()), "a closed worker left its sandbox folder behind"
