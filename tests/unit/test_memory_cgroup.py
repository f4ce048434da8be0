"""Finding this process's memory cgroup (torchsteps.sandbox.memory_cgroup), from sample /proc files."""

from __future__ import annotations

import pytest

from torchsteps.sandbox.memory_cgroup import CgroupUnavailable, MemoryCgroup, _own_memory_cgroup

V1_CGROUP = "4:memory:/jobs/abc\n3:cpuset:/\n0::/\n"
V1_MOUNTINFO = (
    "30 25 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "31 25 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
)
V2_CGROUP = "0::/user.slice/grader.service\n"
V2_MOUNTINFO = "30 25 0:27 / {root} rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n"


def _files(tmp_path, cgroup, mountinfo):
    (tmp_path / "cgroup").write_text(cgroup)
    (tmp_path / "mountinfo").write_text(mountinfo)
    return str(tmp_path / "cgroup"), str(tmp_path / "mountinfo")


def test_v1_memory_hierarchy_is_preferred(tmp_path, monkeypatch):
    mount = tmp_path / "sys" / "memory"
    (mount / "jobs" / "abc").mkdir(parents=True)
    files = _files(tmp_path, V1_CGROUP, V1_MOUNTINFO.replace("/sys/fs/cgroup/memory", str(mount)))
    assert _own_memory_cgroup(*files) == ((mount / "jobs" / "abc").resolve(), 1)


def test_v2_unified_hierarchy(tmp_path):
    mount = tmp_path / "unified"
    (mount / "user.slice" / "grader.service").mkdir(parents=True)
    files = _files(tmp_path, V2_CGROUP, V2_MOUNTINFO.format(root=mount))
    assert _own_memory_cgroup(*files) == ((mount / "user.slice" / "grader.service").resolve(), 2)


def test_a_cgroup_namespace_root_maps_to_the_mount_point(tmp_path):
    """Inside a cgroup namespace /proc/self/cgroup says "/" and the mount's root is the namespace's."""
    mount = tmp_path / "memory"
    mount.mkdir()
    files = _files(tmp_path, "5:memory:/\n", f"30 25 0:27 /jobs/abc {mount} rw - cgroup cgroup rw,memory\n")
    assert _own_memory_cgroup(*files) == (mount.resolve(), 1)


def test_no_memory_hierarchy_is_a_clear_error(tmp_path):
    files = _files(tmp_path, "3:cpuset:/\n", "30 25 0:27 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n")
    with pytest.raises(CgroupUnavailable, match="no memory cgroup"):
        _own_memory_cgroup(*files)


def test_oom_kills_are_read_from_the_control_file(tmp_path):
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    assert MemoryCgroup(tmp_path, 1).oom_kills() == 3
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n")
    assert MemoryCgroup(tmp_path, 2).oom_kills() == 2
    assert MemoryCgroup(tmp_path / "gone", 1).oom_kills() == 0


def test_wrap_joins_before_the_command_runs(tmp_path):
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    import subprocess

    command = MemoryCgroup(tmp_path, 1).wrap(["/bin/sh", "-c", "echo started $$"])
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert out == f"started {procs.read_text().strip()}\n"  # the same process: it joined, then exec'd
