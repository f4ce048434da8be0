"""Where the sandboxes' private folders may be made (``SandboxedKernelManager.runtime_dir``)."""

from __future__ import annotations

import pytest
from traitlets import TraitError
from traitlets.config import Config

from torchsteps.sandbox import SandboxedKernelManager


def _manager(runtime_dir: str) -> SandboxedKernelManager:
    config = Config()
    config.SandboxedKernelManager.runtime_dir = runtime_dir
    return SandboxedKernelManager(config=config)


@pytest.mark.parametrize("hidden", ["/tmp/grading", "/tmp", "/dev/shm/grading", "/tmp/../tmp/x"])
def test_a_folder_every_kernel_sees_empty_is_refused_with_the_reason(hidden):
    # Regression: under /tmp each kernel's own tmpfs hid its sockets, and every notebook failed with
    # "Kernel died before replying to kernel_info".
    with pytest.raises(TraitError, match=r"runtime_dir .* is under /(tmp|dev/shm), which each kernel gets empty"):
        _manager(hidden)


def test_a_link_into_tmp_is_refused_too(tmp_path):
    link = tmp_path / "link"
    link.symlink_to("/tmp")
    with pytest.raises(TraitError, match="under /tmp"):
        _manager(str(link))


@pytest.mark.parametrize("fine", ["/var/tmp/torchsteps", "/srv/grading/run", "/tmpfiles/run"])
def test_other_folders_are_kept(fine):
    assert _manager(fine).runtime_dir == fine


def test_grade_stops_at_once_with_the_reason(tmp_path):
    # Checked before any kernel starts: one message, not one error per notebook of every student.
    import subprocess
    import sys

    (tmp_path / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'x'\nc.SandboxedKernelManager.runtime_dir = '/tmp/somewhere'\n")
    (tmp_path / "source" / "a1").mkdir(parents=True)
    (tmp_path / "source" / "a1" / "n.ipynb").write_text("{}")
    done = subprocess.run([sys.executable, "-m", "torchsteps", "--course", str(tmp_path), "grade"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Cannot grade: SandboxedKernelManager.runtime_dir '/tmp/somewhere' is under /tmp" in done.stdout
