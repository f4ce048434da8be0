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


# --- Who may write into it (it lies in /var/tmp by default, where every user may make folders and links) ---

import os  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from torchsteps.sandbox.folders import RuntimeDirError, claim_uid, make_private_dir, prepare_runtime_dir, remove_private_dir  # noqa: E402

OTHER_USER = 65534  # nobody


def test_a_missing_folder_is_made_for_this_user_alone(tmp_path):
    base = prepare_runtime_dir(tmp_path / "runtime")
    info = os.lstat(base)
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
    assert not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775])
def test_a_folder_others_may_write_to_is_refused(tmp_path, mode):
    base = tmp_path / "runtime"
    base.mkdir()
    os.chmod(base, mode)
    with pytest.raises(RuntimeDirError, match=r"may be written by (others|its group)"):
        make_private_dir(base)
    assert os.listdir(base) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder or link of another user needs root")
def test_a_folder_or_link_of_another_user_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o711)
    os.chown(theirs, OTHER_USER, OTHER_USER)
    with pytest.raises(RuntimeDirError, match=f"belongs to user id {OTHER_USER}"):
        prepare_runtime_dir(theirs)
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o711)
    link = tmp_path / "link"
    link.symlink_to(mine)
    os.chown(link, OTHER_USER, OTHER_USER, follow_symlinks=False)
    with pytest.raises(RuntimeDirError, match=f"goes through the link {link}, made by user id {OTHER_USER}"):
        prepare_runtime_dir(link)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder or link of another user needs root")
def test_another_users_folder_or_link_anywhere_on_the_way_is_refused(tmp_path):
    # Review: only the last part was checked. Another user's folder on the way (or their link in a chain of
    # links) lets them swap what lies below it after the check.
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, OTHER_USER, OTHER_USER)
    with pytest.raises(RuntimeDirError, match=f"lies in {theirs}, which belongs to user id {OTHER_USER}"):
        prepare_runtime_dir(theirs / "runtime")
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o711)
    their_link = tmp_path / "their-link"
    their_link.symlink_to(mine)
    os.chown(their_link, OTHER_USER, OTHER_USER, follow_symlinks=False)
    my_link = tmp_path / "my-link"
    my_link.symlink_to(their_link)
    with pytest.raises(RuntimeDirError, match=f"goes through the link {their_link}"):
        prepare_runtime_dir(my_link)


def test_a_folder_on_the_way_others_may_write_to_is_refused_unless_sticky(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(RuntimeDirError, match=f"lies in {shared}, which may be written by others .*chmod go-w {shared}"):
        prepare_runtime_dir(shared / "runtime")
    os.chmod(shared, 0o1777)  # as /tmp and /var/tmp: nobody may rename or remove another's entries
    assert prepare_runtime_dir(shared / "runtime").is_dir()


def test_a_sticky_shared_folder_itself_is_refused_with_advice_that_keeps_it_as_it_is(tmp_path):
    # Review: "run chmod go-w /var/tmp" would break the system; a folder of one's own inside it is the way.
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with pytest.raises(RuntimeDirError, match=f"choose a folder of your own inside it .*{shared / 'torchsteps'}") as refused:
        prepare_runtime_dir(shared)
    assert "chmod" not in str(refused.value)


def test_a_folder_that_cannot_be_made_is_a_clear_refusal(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(RuntimeDirError, match="cannot be used"):
        prepare_runtime_dir(tmp_path / "a-file" / "runtime")


def test_a_link_of_this_user_to_a_folder_of_its_own_is_followed(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o711)
    link = tmp_path / "link"
    link.symlink_to(mine)
    root = make_private_dir(link)
    try:
        assert root.resolve().parent == mine
    finally:
        remove_private_dir(root)


def test_a_lock_file_planted_as_a_link_is_neither_followed_nor_truncated(tmp_path):
    # Regression: the user-id lock files were opened with open(path, "w"), which follows a link and empties
    # its target (as root: any file of the system).
    base = tmp_path / "runtime"
    base.mkdir(mode=0o711)
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    (base / "probe-uid-61000.lock").symlink_to(precious)
    script = ("import sys; from pathlib import Path; from torchsteps.sandbox.folders import claim_uid; "
              "print(claim_uid(61000, Path(sys.argv[1]), 'probe-uid'))")
    done = subprocess.run([sys.executable, "-c", script, str(base)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "61001", "the id behind a link was claimed"
    assert precious.read_text() == "keep me"


def test_grade_stops_at_once_when_the_folder_is_unsafe(tmp_path, request):
    import shutil
    import tempfile

    runtime = tempfile.mkdtemp(prefix="torchsteps-test-runtime-", dir="/var/tmp")  # not under /tmp (refused above)
    request.addfinalizer(lambda: shutil.rmtree(runtime, ignore_errors=True))
    os.chmod(runtime, 0o777)
    (tmp_path / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.course_id = 'x'\nc.SandboxedKernelManager.runtime_dir = {str(runtime)!r}\n")
    (tmp_path / "source" / "a1").mkdir(parents=True)
    (tmp_path / "source" / "a1" / "n.ipynb").write_text("{}")
    done = subprocess.run([sys.executable, "-m", "torchsteps", "--course", str(tmp_path), "grade"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"Cannot grade: SandboxedKernelManager.runtime_dir {runtime!r} may be written by others" in done.stdout
    assert os.listdir(runtime) == []


def test_running_out_of_file_descriptors_is_said_not_taken_for_every_id_being_in_use(tmp_path):
    # Review: every error of opening a lock file was taken for "this id is taken"; out of descriptors,
    # claim_uid tried 1000 ids and said "no free sandbox user id".
    base = tmp_path / "runtime"
    base.mkdir(mode=0o711)
    script = ("import os, resource, sys; from pathlib import Path; from torchsteps.sandbox.folders import claim_uid\n"
              "resource.setrlimit(resource.RLIMIT_NOFILE, (3, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
              "try:\n    print(claim_uid(61000, Path(sys.argv[1]), 'probe-uid'))\n"
              "except OSError as why:\n    print(type(why).__name__, why.errno)\n")
    done = subprocess.run([sys.executable, "-c", script, str(base)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["OSError", "24"], done.stdout  # EMFILE


@pytest.mark.skipif(os.geteuid() != 0, reason="making a link of another user needs root")
def test_a_link_planted_in_a_sticky_folder_is_not_suggested_again(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    planted = shared / "torchsteps"
    planted.symlink_to(tmp_path)
    os.chown(planted, OTHER_USER, OTHER_USER, follow_symlinks=False)
    with pytest.raises(RuntimeDirError, match="choose a folder of your own in nbgrader_config.py$"):
        prepare_runtime_dir(planted)


# --- Second review: nothing made on a refused path; rootless containers; advice only where it applies ---

import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from torchsteps.sandbox import folders as folders_module  # noqa: E402

# Run as another user (and perhaps in a user namespace), the module is loaded from a copy by its path:
# that user may not be able to read this checkout or the interpreter's packages.
_PROBE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("folders", sys.argv[1])
folders = importlib.util.module_from_spec(spec)
spec.loader.exec_module(folders)
for path in sys.argv[2:]:
    try:
        print("ok", folders.prepare_runtime_dir(path))
    except folders.RuntimeDirError as why:
        print("refused", why)
"""


@pytest.fixture
def shared_tmp(request):
    """A folder in /var/tmp (root's, mode 755) that every user can reach, with a copy of the module and the probe."""
    where = Path(tempfile.mkdtemp(prefix="torchsteps-test-runtime-", dir="/var/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(where, ignore_errors=True))
    os.chmod(where, 0o755)
    shutil.copy(folders_module.__file__, where / "folders.py")
    (where / "probe.py").write_text(_PROBE)
    return where


def _as_nobody(shared_tmp: Path, *paths, namespace: bool = False) -> list[str]:
    """What the probe prints for each of ``paths``, run as user ``nobody`` (inside ``unshare -r`` if
    ``namespace``: a rootless container, where this user is root and the system's files belong to 65534)."""
    wrap = ["setpriv", f"--reuid={OTHER_USER}", f"--regid={OTHER_USER}", "--clear-groups"]
    wrap += ["unshare", "-r", "--"] if namespace else []
    for python in dict.fromkeys([sys.executable, shutil.which("python3"), "/usr/bin/python3"]):
        if not python:
            continue
        try:
            done = subprocess.run([*wrap, python, str(shared_tmp / "probe.py"), str(shared_tmp / "folders.py"), *map(str, paths)],
                                  capture_output=True, text=True, timeout=60)
        except OSError:
            continue
        if done.returncode == 0:
            return done.stdout.splitlines()
    pytest.skip(f"cannot run Python as user nobody{' in a user namespace' if namespace else ''} here")


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder or link of another user needs root")
def test_a_refused_path_has_nothing_made_below_the_part_refused(tmp_path):
    # Review: the folders were made (mkdir -p) before the path was checked, through another user's link too.
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, OTHER_USER, OTHER_USER)
    with pytest.raises(RuntimeDirError, match=f"lies in {theirs}"):
        prepare_runtime_dir(theirs / "a" / "b")
    assert list(theirs.iterdir()) == []
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o711)
    their_link = tmp_path / "their-link"
    their_link.symlink_to(mine)
    os.chown(their_link, OTHER_USER, OTHER_USER, follow_symlinks=False)
    with pytest.raises(RuntimeDirError, match=f"goes through the link {their_link}"):
        prepare_runtime_dir(their_link / "runtime")
    assert list(mine.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="making a link of another user needs root")
def test_a_dangling_link_planted_where_the_folder_would_be_is_named(tmp_path):
    # Review: another user's link to nowhere read "[Errno 17] File exists".
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    planted = shared / "torchsteps"
    planted.symlink_to(tmp_path / "nowhere")
    os.chown(planted, OTHER_USER, OTHER_USER, follow_symlinks=False)
    with pytest.raises(RuntimeDirError, match=f"goes through the link {planted}, made by user id {OTHER_USER}"):
        prepare_runtime_dir(planted)
    assert not (tmp_path / "nowhere").exists()


def test_a_link_of_ones_own_to_a_missing_folder_has_it_made(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "made" / "here")
    assert prepare_runtime_dir(link) == tmp_path / "made" / "here"  # the folder itself: no link to re-resolve
    assert stat.S_IMODE(os.lstat(tmp_path / "made" / "here").st_mode) & 0o022 == 0


def test_a_file_where_the_folder_should_be_is_said(tmp_path):
    (tmp_path / "runtime").write_text("")
    with pytest.raises(RuntimeDirError, match="cannot be used: .*not a folder"):
        prepare_runtime_dir(tmp_path / "runtime")


def test_dot_dot_after_a_link_goes_back_from_where_the_link_led(tmp_path):
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True, mode=0o711)
    os.chmod(tmp_path / "elsewhere", 0o711)
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere" / "deep")
    made = prepare_runtime_dir(tmp_path / "link" / ".." / "runtime")
    assert (tmp_path / "elsewhere" / "runtime").is_dir() and not (tmp_path / "runtime").exists()
    assert os.path.samefile(made, tmp_path / "elsewhere" / "runtime")


def test_dot_dot_after_a_missing_folder_is_refused_as_the_kernel_does_and_makes_nothing(tmp_path):
    # Review (left open before): `ghost/../runtime` made ghost and was accepted; the kernel refuses it (ENOENT).
    with pytest.raises(RuntimeDirError, match=f"cannot be used: '..' after a folder that does not exist: {tmp_path / 'ghost'}"):
        prepare_runtime_dir(tmp_path / "ghost" / "deeper" / ".." / ".." / "runtime")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "real").mkdir(mode=0o711)
    assert prepare_runtime_dir(tmp_path / "real" / ".." / "runtime") == tmp_path / "runtime"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("unshare"),
                    reason="needs root (to act as nobody), setpriv and unshare")
def test_in_a_rootless_container_the_system_folders_count_as_roots_and_other_users_do_not(shared_tmp):
    # Review: under `unshare -r` (rootless Podman, Apptainer --userns) / belongs to 65534, and every
    # runtime_dir was refused. Another user's folder in /var/tmp shows as 65534 too: still refused.
    fresh = Path(f"{shared_tmp}-userns")
    planted = shared_tmp / "planted"  # root's outside, so 65534 inside, as another user's would be
    planted.mkdir(mode=0o755)
    try:
        said = _as_nobody(shared_tmp, fresh, planted / "runtime", "/usr/share/torchsteps-probe", namespace=True)
        assert said[0] == f"ok {fresh}", said
        assert said[1].startswith("refused ") and f"lies in {shared_tmp}, which belongs to user id 65534" in said[1], said
        # Review: a folder of 65534 in a folder nobody else may write to was trusted too, and so was another
        # user's /home/bob. Only the system's own folders are (/usr is; /usr/share is not on the list).
        assert "lies in /usr/share, which belongs to user id 65534" in said[2], said
        assert fresh.is_dir() and fresh.stat().st_uid == OTHER_USER  # this user's, seen from outside
        assert list(planted.iterdir()) == []
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root (to act as nobody) and setpriv")
def test_chmod_is_advised_only_for_ones_own_folder(shared_tmp):
    # Review: `chmod go-w /var/local` was advised to an instructor who cannot change root's folder.
    roots = shared_tmp / "roots"
    roots.mkdir()
    os.chmod(roots, 0o775)
    own = shared_tmp / "own"
    own.mkdir()
    os.chown(own, OTHER_USER, OTHER_USER)
    os.chmod(own, 0o775)
    said = _as_nobody(shared_tmp, roots / "runtime", own / "runtime")
    assert said[0].endswith("may be written by its group (mode 775), so another user could change it; "
                            "choose a folder of your own in nbgrader_config.py"), said
    assert said[1].endswith(f"run `chmod go-w {own}`"), said


def test_a_file_system_without_locks_is_said_not_taken_for_every_id_being_in_use(tmp_path, monkeypatch):
    # Every failed flock used to mean "another process holds this id": on a file system without locks
    # claim_uid tried 1000 ids and grading said "no free sandbox user id".
    import errno
    import fcntl

    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(RuntimeDirError, match=r"cannot be used: its files cannot be locked \(No locks available\)"):
        claim_uid(61000, tmp_path / "runtime", "probe-no-locks")


def test_a_path_that_resolves_to_a_refused_folder_makes_nothing_and_says_where_it_led(tmp_path):
    # Review: "new/.." made "new" before the folder reached (the shared one) was refused, and the message
    # named only the path as written.
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    (shared / "mine").mkdir(mode=0o711)
    with pytest.raises(RuntimeDirError, match=f"resolves to {shared}, which may be written by others"):
        prepare_runtime_dir(shared / "mine" / "..")
    assert [p.name for p in shared.iterdir()] == ["mine"] and list((shared / "mine").iterdir()) == []
    # A folder that does not exist, with ".." after it, is refused as the kernel refuses it (nothing made).
    with pytest.raises(RuntimeDirError, match="'..' after a folder that does not exist"):
        prepare_runtime_dir(shared / "new" / "..")
    assert [p.name for p in shared.iterdir()] == ["mine"]


def test_a_link_loop_is_said_as_such(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(RuntimeDirError, match="cannot be used: too many links: .*loop; choose") as refused:
        prepare_runtime_dir(tmp_path / "loop")
    assert "another user" not in str(refused.value)


def test_the_folder_returned_is_absolute_and_not_the_root(tmp_path, monkeypatch):
    # Review: a relative runtime_dir stayed relative (bubblewrap resolves a relative bind in the sandbox's
    # working folder), and "/" was accepted, so lock files and kernel folders would go straight into /.
    monkeypatch.chdir(tmp_path)
    assert prepare_runtime_dir("runtime") == tmp_path / "runtime"
    for root in ("/", "/var/..", str(tmp_path) + "/" + "../" * len(tmp_path.parts)):
        with pytest.raises(RuntimeDirError, match="cannot be used: it resolves to / itself"):
            prepare_runtime_dir(root)
