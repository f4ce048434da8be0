"""What each Dask worker runs besides the grading tasks (imported only where ``distributed`` is used)."""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["SandboxCleanup"]


class SandboxCleanup(WorkerPlugin):
    """Ends the worker's sandboxes and removes their folders (they hold a student's files) when the worker
    closes: ``dask worker`` stopped by SIGTERM or Ctrl-C, or retired by the scheduler. Exit handlers do the
    same only when the process ends normally; a worker killed with SIGKILL leaves its folders to the next
    grading process on that machine (:func:`torchsteps.sandbox.folders.sweep_orphans`)."""

    name = "torchsteps-sandbox-cleanup"
    # Every `grade` registers it; registering a plugin again replaces it, and the replaced one's teardown
    # would end the sandboxes of the submissions another `grade` is grading on the same workers.
    idempotent = True

    def teardown(self, worker) -> None:
        from ..sandbox import close_all

        close_all()
