"""Running student code: every kernel in a bubblewrap sandbox, forked from a warm parent.

Owns: the kernel manager nbgrader's execute step uses (:mod:`.kernel_manager`), the warm parent that
imports torch once and forks kernels (:mod:`.warm`, host side; :mod:`.zygote`, the script run inside the
sandbox), and the sandbox's folders (:mod:`.folders`). Imports nothing else of torchsteps except
:mod:`torchsteps.constants`.
"""

from .kernel_manager import SandboxedKernelManager, SandboxUnavailable, check_sandbox

__all__ = ["SandboxedKernelManager", "SandboxUnavailable", "check_sandbox", "close_all"]


def close_all(now: bool = False) -> None:
    """End every warm parent this process started (kernels' and graders') and remove their private folders.

    Run at exit; call it yourself where exit handlers do not run (a process ended by a signal), with
    ``now=True`` from a signal handler: it then waits for nothing the interrupted code may hold (a process
    it was waiting for, a pipe it was writing to). The folders hold the working copy of the notebook being
    graded, that is, the student's files.
    """
    import contextlib

    from . import folders, grader_process, warm

    # From a signal handler, all the removals together get SIGNAL_REMOVAL_TIMEOUT_S; what is left is swept later.
    with folders.removals_within(folders.SIGNAL_REMOVAL_TIMEOUT_S) if now else contextlib.nullcontext():
        try:
            warm.close_all(now)
        finally:
            try:
                grader_process.close_all(now)
            finally:
                # Also the folders of a sandbox that was still starting when the signal came (not listed above yet).
                folders.remove_all_private_dirs(timeout_s=folders.SIGNAL_REMOVAL_TIMEOUT_S if now else 300)
