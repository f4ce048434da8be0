"""Running student code: every kernel in a bubblewrap sandbox, forked from a warm parent.

Owns: the kernel manager nbgrader's execute step uses (:mod:`.kernel_manager`), the warm parent that
imports torch once and forks kernels (:mod:`.warm`, host side; :mod:`.zygote`, the script run inside the
sandbox), and the sandbox's folders (:mod:`.folders`). Imports nothing else of torchsteps except
:mod:`torchsteps.constants`.
"""

from .kernel_manager import SandboxedKernelManager, SandboxUnavailable, check_sandbox

__all__ = ["SandboxedKernelManager", "SandboxUnavailable", "check_sandbox"]
