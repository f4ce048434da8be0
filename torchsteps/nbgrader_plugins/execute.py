"""nbgrader's Execute preprocessor with limits for a whole notebook.

Upstream, a timeout applies per cell, so a student function that loops forever costs the timeout once for
every test cell that calls it; a kernel that dies (memory limit, ``os._exit``) aborts the submission; and
a cell that prints hundreds of MB is held in the grader's memory before ``LimitOutput`` trims it.
:class:`GuardedExecute` keeps nbgrader's behaviour otherwise and adds:

- ``notebook_timeout``: one wall-time budget for the whole notebook; a cell never gets more than what is
  left, and once it is spent the remaining cells are not run and get an error output (score 0);
- a dead kernel: the cell that was running and every later cell get an error output saying so; the
  cells that ran before keep their scores;
- output caps and the write limit (issue 11, :mod:`torchsteps.nbgrader_plugins.limits`): every message
  kind counts against ``max_cell_output_bytes`` and ``max_output_bytes``, dropped while it arrives, with
  a visible marker; a kernel that filled its writable tmpfs loses the notebook's remaining cells;
- the kernel's working folder holds the files handed out with the assignment: every file of
  ``release/<assignment>/`` except notebooks (a data file, a helper module, in subfolders too), taken
  from the notebook's folder, where nbgrader autograde has put the instructor's version. Other files
  there (student extras such as a ``torch.py``) stay outside the sandbox.
"""

from __future__ import annotations

import os
import time

from nbclient.exceptions import DeadKernelError
from nbformat.v4 import new_output
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import Execute
from nbgrader.utils import find_all_files
from traitlets import Integer

from ..constants import SELFCHECK_WHEEL_GLOB
from ..sandbox import SandboxedKernelManager
from .limits import OutputCap, WriteLimit

__all__ = ["GuardedExecute", "handed_out_files"]


class GuardedExecute(WriteLimit, OutputCap, Execute):
    """nbgrader's ``Execute`` with a notebook time budget, dead-kernel handling and an output cap.

    Kernels start through :class:`torchsteps.sandbox.SandboxedKernelManager`. (nbgrader's ``Execute``
    passes its kernel manager class as a constructor argument, which overrides configuration, so the
    class is chosen here; the sandbox's own settings stay in ``c.SandboxedKernelManager``.)
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)

    notebook_timeout = Integer(120, help="wall-time budget of the whole notebook, seconds").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._handed_out = handed_out_files(self.config, (resources or {}).get("nbgrader", {}).get("assignment"))
        self._deadline = time.monotonic() + self.notebook_timeout
        self._stopped = ""
        self.timeout_func = self._cell_timeout
        return super().preprocess(nb, resources, km)

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        if isinstance(km, SandboxedKernelManager):
            km.workdir_files = [*km.workdir_files, *getattr(self, "_handed_out", [])]
        return km

    def _cell_timeout(self, cell) -> int:
        remaining = max(1, int(self._deadline - time.monotonic()))
        return min(self.timeout, remaining) if self.timeout and self.timeout > 0 else remaining

    def _not_run(self, cell, reason: str) -> None:
        cell.outputs = [
            new_output("error", ename="CellNotRun", evalue=reason, traceback=[f"CellNotRun: {reason}"])
        ]

    def _reason_not_to_run(self) -> str:
        """Why the next code cell must not run, or "": the notebook's time budget is spent, its kernel died,
        or its writable space is full (:class:`WriteLimit`). One check for every code cell, wherever it runs
        (the student kernel here, the grader process in ``TrustedExecute``)."""
        if not self._stopped and time.monotonic() >= self._deadline:
            self._stopped = f"the notebook used up its time limit of {self.notebook_timeout} s before this cell"
        if self._stopped:
            return self._stopped
        full = getattr(self, "_write_limit_reason", "")
        return f"{full}; later cells were not run" if full else ""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        reason = self._reason_not_to_run()
        if reason:
            self._not_run(cell, reason)
            return cell, resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            memory = getattr(self.km, "memory_limit_reason", lambda: "")()
            self._stopped = (
                f"{memory}: the kernel was stopped while running cell {index}; later cells were not run" if memory else
                f"the kernel died while running cell {index} (memory or CPU limit, a crash, or the code "
                "ended the process); later cells were not run"
            )
            self._not_run(cell, self._stopped)
            return cell, resources


def handed_out_files(config, assignment_id: str | None) -> list[str]:
    """Paths, relative to ``release/<assignment_id>/`` and with ``/`` separators, of its files other than notebooks.

    These are what students were given beside the notebooks (nbgrader copies every such file of
    ``source/`` into the release and, at autograde, over the student's copy). Files nbgrader ignores
    (``CourseDirectory.ignore``: checkpoints, ``__pycache__``) and the self-check wheel the release step adds
    (:data:`torchsteps.constants.SELFCHECK_WHEEL_GLOB`) are left out. An empty list when the
    assignment has no release folder (``nbgrader generate_assignment`` not run) or is unknown.
    """
    if not assignment_id:
        return []
    coursedir = CourseDirectory(config=config)
    release = coursedir.format_path(coursedir.release_directory, ".", assignment_id)
    if not os.path.isdir(release):
        return []
    files = find_all_files(release, list(coursedir.ignore) + ["*.ipynb", SELFCHECK_WHEEL_GLOB])
    return sorted(os.path.relpath(f, release).replace(os.sep, "/") for f in files)
