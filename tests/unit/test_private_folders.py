"""The sandboxes' private folders (they hold a student's files) never outlive their grading process."""

from __future__ import annotations

import os
import shlex
import signal
import stat
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from torchsteps.sandbox import folders
from torchsteps.sandbox.folders import PRIVATE_DIR_PREFIX, make_private_dir, remove_all_private_dirs, remove_private_dir, sweep_orphans
from torchsteps.sandbox.grader_process import GraderError, GraderParent, close_each
from torchsteps.sandbox.warm import Zygote, ZygoteError

# A grading process in miniature: it makes a private folder (as a warm parent does first thing when it
# starts), says where, and waits; on SIGTERM it does what the workers and `grade` do.
_OWNER = """
import os, signal, sys, time
from torchsteps.sandbox import close_all
from torchsteps.sandbox.folders import make_private_dir
signal.signal(signal.SIGTERM, lambda signum, frame: (close_all(), os._exit(128 + signum)))
print(make_private_dir(sys.argv[1]), flush=True)
time.sleep(120)
"""


def _owner(base: Path) -> tuple[subprocess.Popen, Path]:
    process = subprocess.Popen([sys.executable, "-c", _OWNER, str(base)], stdout=subprocess.PIPE, text=True)
    root = Path(process.stdout.readline().strip())
    assert root.is_dir() and root.parent == base, root
    return process, root


def _age(path: Path, seconds: float = 2 * folders.ORPHAN_AGE_S) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_sigterm_while_a_sandbox_is_starting_removes_its_folder(tmp_path):
    # Regression (seen in CI, 3 of 8 tries by hand): `grade -j 2` killed while a worker was starting its
    # grader process left that sandbox's folder. The folder existed, but the parent object that would
    # remove it was not listed yet, so the SIGTERM handler did not know it.
    process, root = _owner(tmp_path)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 143
    assert not root.exists(), "the folder of a sandbox that was starting was left behind"


def test_the_folders_of_a_killed_process_go_with_the_next_private_folder(tmp_path):
    # SIGKILL (kill -9, the OOM killer): nothing runs in the process, so its folders stay until the next
    # grading process in the same runtime_dir finds their lock free.
    process, orphan = _owner(tmp_path)
    process.kill()
    process.wait(timeout=30)
    assert orphan.is_dir()
    _age(orphan)
    fresh = make_private_dir(tmp_path)
    try:
        assert not orphan.exists(), "the folder of a dead grading process was not swept"
        assert (fresh / "run").is_dir() and (fresh / "work").is_dir()
    finally:
        remove_private_dir(fresh)
    assert not fresh.exists()


def test_the_sweep_keeps_live_owners_young_folders_links_and_other_names(tmp_path):
    process, live = _owner(tmp_path)
    try:
        _age(live)
        young = tmp_path / f"{PRIVATE_DIR_PREFIX}young"
        young.mkdir()  # unlocked, but its owner may be about to lock it
        old = tmp_path / f"{PRIVATE_DIR_PREFIX}old"
        (old / "run").mkdir(parents=True)
        _age(old)
        target = tmp_path / "elsewhere"
        target.mkdir()
        link = tmp_path / f"{PRIVATE_DIR_PREFIX}link"
        link.symlink_to(target)
        _age(link)
        other = tmp_path / "uid-1000.lock"
        other.write_text("")
        _age(other)

        assert sweep_orphans(tmp_path) == [old]
        assert live.is_dir() and young.is_dir() and target.is_dir() and link.is_symlink() and other.exists()
    finally:
        process.kill()
        process.wait(timeout=30)


def test_this_process_never_sweeps_its_own_folders(tmp_path):
    root = make_private_dir(tmp_path)
    try:
        _age(root)
        assert sweep_orphans(tmp_path) == []
        assert root.is_dir()
    finally:
        remove_private_dir(root)


def test_remove_all_private_dirs_removes_each_folder_and_gives_up_its_lock(tmp_path):
    roots = [make_private_dir(tmp_path) for _ in range(3)]
    assert len(set(roots)) == 3 and all(r in folders._owned for r in roots)
    (roots[0] / "work" / "submission.ipynb").write_text("{}")
    remove_all_private_dirs()
    assert not any(r.exists() for r in roots)
    assert not any(r in folders._owned for r in roots)


def test_close_each_closes_the_others_when_one_fails():
    closed = []

    class Handle:
        def __init__(self, name, fails=False):
            self.name, self.fails = name, fails

        def close(self, now=False):
            closed.append(self.name)
            if self.fails:
                raise OSError(f"{self.name} failed")

    with pytest.raises(OSError, match="a failed"):
        close_each([Handle("a", fails=True), Handle("b"), Handle("c", fails=True)])
    assert closed == ["a", "b", "c"]


def _nest(folder: Path, depth: int) -> Path:
    """``folder/d/d/.../d`` (``depth`` levels), made one level at a time (``os.makedirs`` recurses too)."""
    path = str(folder)
    for _ in range(depth):
        path += "/d"
        os.mkdir(path)
    Path(path, "cell-output.txt").write_text("x")
    return Path(path)


def test_folders_nested_deeper_than_the_recursion_limit_are_removed(tmp_path):
    # Regression: a kernel that is not isolated (grading without root) writes into the host folder; a tree
    # deeper than the recursion limit made shutil.rmtree raise RecursionError, which escaped
    # remove_private_dir and stopped every cleanup after it.
    roots = [make_private_dir(tmp_path) for _ in range(2)]
    _nest(roots[0] / "work", sys.getrecursionlimit() + 100)
    remove_all_private_dirs()
    assert not any(r.exists() for r in roots), "a deep tree (or the folder after it) was left behind"
    assert not any(r in folders._owned for r in roots)


def test_a_deep_orphan_neither_survives_the_sweep_nor_stops_the_next_sandbox(tmp_path):
    process, orphan = _owner(tmp_path)
    process.kill()
    process.wait(timeout=30)
    _nest(orphan / "work", sys.getrecursionlimit() + 100)
    _age(orphan)
    fresh = make_private_dir(tmp_path)
    try:
        assert not orphan.exists()
    finally:
        remove_private_dir(fresh)


_LOCKED_TREE = """
import os, sys
from torchsteps.sandbox.folders import make_private_dir, remove_private_dir
root = make_private_dir(sys.argv[1])
locked = root / "work" / "locked" / "inner"
locked.mkdir(parents=True)
(locked / "answer.pt").write_text("x")
os.chmod(locked, 0o500)
os.chmod(locked.parent, 0o500)
remove_private_dir(root)
sys.exit(1 if os.path.lexists(root) else 0)
"""


_UNREADABLE_TREE = """
import os, sys
from torchsteps.sandbox.folders import make_private_dir, remove_private_dir, remove_tree
root = make_private_dir(sys.argv[1])
shut = root / "work" / "shut"
(shut / "inner").mkdir(parents=True)
(shut / "inner" / "answer.pt").write_text("x")
os.chmod(shut, 0o000)  # not even readable: the fallback must still get in (review: O_RDONLY could not open it)
gone = remove_tree(shut)
remove_private_dir(root)
sys.exit(0 if gone else 1)
"""


@pytest.mark.parametrize("script", [_LOCKED_TREE, _UNREADABLE_TREE], ids=["read-only", "unreadable"])
def test_folders_a_kernel_made_read_only_are_removed(tmp_path_factory, script):
    # A kernel that is not isolated runs as the grading user, who is not root: `chmod 500` on a folder
    # keeps its entries from being removed (root would not care).
    base = Path(tmp_path_factory.mktemp("ordinary", numbered=True))
    command = [sys.executable, "-c", script, str(base / "runtime")]
    if os.geteuid() == 0:  # as an ordinary user, as an instructor grades
        nobody = 65534
        for folder in (base, *base.parents):
            os.chmod(folder, os.stat(folder).st_mode | 0o001)  # traversable, not listable
        os.chown(base, nobody, nobody)
        command = ["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(Path(folders.__file__).parents[2])})
    assert result.returncode == 0, result.stderr or "a folder made read-only was left behind"


def _manager(base: Path, answer: str):
    """The settings a warm parent reads from its kernel manager; its sandbox command prints ``answer``."""
    return types.SimpleNamespace(
        runtime_dir=str(base), preload=[], warmup="", cpu_seconds=60, uid=60000, kernel_uid=60000,
        isolation_settings=lambda: {}, cgroup_memory_mb=0,
        sandbox_command=lambda argv, root, **options: ["sh", "-c", f"printf '%s' {shlex.quote(answer)}"],
    )


@pytest.mark.parametrize("answer", ["", "not json\n", '{"op": "crashed"}\n'], ids=["exits", "unreadable", "not-ready"])
@pytest.mark.parametrize("start", [lambda m: Zygote(m, []), lambda m: GraderParent(m, sandboxed=True)], ids=["kernels", "graders"])
def test_a_warm_parent_that_fails_to_start_leaves_no_folder(tmp_path, start, answer):
    # Regression: a warm parent that exited or answered garbage while starting raised without removing its
    # folder, which stayed until the grading process ended.
    before = set(folders._owned)
    with pytest.raises((ZygoteError, GraderError)):
        start(_manager(tmp_path, answer))
    assert set(folders._owned) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(PRIVATE_DIR_PREFIX)]


_FORKS = """
import os, sys
from torchsteps.sandbox.folders import make_private_dir
root = make_private_dir(sys.argv[1])
child = os.fork()
if child == 0:
    sys.exit(0)  # a normal exit: exit handlers run in the child
os.waitpid(child, 0)
print("kept" if (root / "work").is_dir() else "removed by the child", flush=True)
"""


def test_a_forked_child_leaves_its_parents_folders_alone(tmp_path):
    done = subprocess.run([sys.executable, "-c", _FORKS, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "kept"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(PRIVATE_DIR_PREFIX)], "the parent's exit removes it"


# A warm parent in miniature: it speaks the protocol of zygote.py (ready, then one JSON answer a line).
_TINY_PARENT = (
    "import json, sys\n"
    "print(json.dumps({'ready': True}), flush=True)\n"
    "for line in sys.stdin:\n"
    "    if json.loads(line).get('cmd') == 'exit':\n"
    "        break\n"
    "    print(json.dumps({'status': 0}), flush=True)\n"
)


def test_a_warm_parent_whose_last_kernels_files_cannot_be_removed_is_not_reused(tmp_path, monkeypatch):
    # Review: reset() ignored a failed removal and the next student's kernel would have found the previous
    # student's files in its working folder.
    from torchsteps.sandbox import warm

    manager = _manager(tmp_path, "")
    manager.sandbox_command = lambda argv, root, **options: [sys.executable, "-c", _TINY_PARENT]
    zygote = Zygote(manager, [])
    try:
        assert zygote.responsive()
        (zygote.work_dir / "answers").mkdir()
        (zygote.work_dir / "answers" / "student.txt").write_text("the last student's work")
        monkeypatch.setattr(warm, "empty_folder", lambda folder: False)  # as for a folder rm -rf cannot remove
        zygote.reset()
        assert not zygote.alive(), "a warm parent whose working folder still holds a student's files was kept"
        assert not zygote.root.exists()
    finally:
        zygote.close()


def test_a_warm_parent_whose_working_folder_cannot_be_emptied_is_closed_not_left_half_reset(tmp_path, monkeypatch):
    # Review: grading without root, a kernel that `chmod 500`s its work/ made unlink raise out of reset(),
    # which skipped the rest of the kernel's cleanup; the warm parent, still holding the file, was reused.
    manager = _manager(tmp_path, "")
    manager.sandbox_command = lambda argv, root, **options: [sys.executable, "-c", _TINY_PARENT]
    zygote = Zygote(manager, [])
    try:
        (zygote.work_dir / "answer.txt").write_text("the last student's work")

        def refused(path, *args, **kwargs):
            raise PermissionError(13, "Permission denied", path)

        monkeypatch.setattr(folders.os, "unlink", refused)
        zygote.reset()  # raises nothing
        monkeypatch.undo()
        assert not zygote.alive() and not zygote.root.exists()
    finally:
        zygote.close()


def test_empty_folder_says_false_where_it_cannot_list_or_remove(tmp_path, monkeypatch):
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "deep" / "er").mkdir(parents=True)
    (folder / "file").write_text("x")
    (folder / "link").symlink_to(tmp_path)
    assert folders.empty_folder(folder) and list(folder.iterdir()) == [] and tmp_path.is_dir()
    assert not folders.empty_folder(tmp_path / "missing")
    (folder / "stuck").mkdir()
    monkeypatch.setattr(folders, "remove_tree", lambda path, *args: False)
    assert not folders.empty_folder(folder)
    monkeypatch.undo()
    (tmp_path / "not-a-folder").write_text("")
    assert not folders.empty_folder(tmp_path / "not-a-folder")


def test_a_grader_parent_whose_working_folder_cannot_be_emptied_is_closed(tmp_path, monkeypatch):
    # The same for the grader: the last notebook's files must not reach the next one's tests.
    parent = GraderParent(_manager(tmp_path, '{"op": "ready"}\n'), sandboxed=True)
    try:
        (parent.work / "left.txt").write_text("x")
        from torchsteps.sandbox import grader_process

        monkeypatch.setattr(grader_process, "empty_folder", lambda folder: False)
        with pytest.raises(GraderError, match="could not be emptied"):
            parent.start_child(None, [])
        assert not parent.alive() and not parent.root.exists()
    finally:
        parent.close()


@pytest.mark.parametrize("now, limit", [(True, folders.SIGNAL_REMOVAL_TIMEOUT_S), (False, 300)])
def test_closing_from_a_signal_handler_gives_each_removal_a_short_limit(tmp_path, monkeypatch, now, limit):
    # Review: on SIGTERM the warm parents' folders were removed with the 300 s default; a batch system
    # follows SIGTERM with SIGKILL within seconds, and the other folders would never get their turn.
    from torchsteps.sandbox import grader_process, warm

    limits = []
    for module in (warm, grader_process):
        monkeypatch.setattr(module, "remove_private_dir", lambda root, timeout_s=300: (limits.append(timeout_s), remove_private_dir(root)))
    manager = _manager(tmp_path, "")
    manager.sandbox_command = lambda argv, root, **options: [sys.executable, "-c", _TINY_PARENT]
    Zygote(manager, []).close(now)
    GraderParent(_manager(tmp_path, '{"op": "ready"}\n'), sandboxed=True).close(now)
    assert limits == [limit, limit]


def test_the_notebook_gets_a_fresh_grader_when_the_warm_one_closed_itself(monkeypatch):
    # A grader parent that could not empty its working folder closes itself (above); the notebook that
    # found it so is graded by a new one rather than losing its tests.
    from torchsteps.nbgrader_plugins import trusted_execute

    class Parent:
        def __init__(self, works):
            self.works, self.open = works, True

        def alive(self):
            return self.open

        def start_child(self, folder, patterns):
            if not self.works:
                self.open = False
                raise GraderError("the grader's working folder could not be emptied")
            return "child"

    parents = iter([Parent(False), Parent(True)])
    monkeypatch.setattr(trusted_execute, "get_grader_parent", lambda *args: next(parents))
    executor = types.SimpleNamespace(_grader=None, km=types.SimpleNamespace(), max_crossing_bytes=1, _folder=None,
                                     _setup_sources=[])
    assert trusted_execute.TrustedExecute._grader_child(executor) == "child"

    still_open = Parent(False)
    still_open.alive = lambda: True  # a failure of a parent that lives on is not retried
    monkeypatch.setattr(trusted_execute, "get_grader_parent", lambda *args: still_open)
    executor._grader = None
    with pytest.raises(GraderError):
        trusted_execute.TrustedExecute._grader_child(executor)


def test_a_warm_parent_is_closed_once(tmp_path, monkeypatch):
    # Review: a parent that closed itself (its folder could not be emptied) was closed again when replaced,
    # which removed the same stubborn folder again (up to 600 s each time).
    from torchsteps.sandbox import grader_process, warm

    removals = []
    for module in (warm, grader_process):
        monkeypatch.setattr(module, "remove_private_dir", lambda root, timeout_s=300: (removals.append(root), remove_private_dir(root)))
    manager = _manager(tmp_path, "")
    manager.sandbox_command = lambda argv, root, **options: [sys.executable, "-c", _TINY_PARENT]
    for parent in (Zygote(manager, []), GraderParent(_manager(tmp_path, '{"op": "ready"}\n'), sandboxed=True)):
        parent.close()
        parent.close(now=True)
    assert len(removals) == 2 and len(set(removals)) == 2


def test_removals_from_a_signal_handler_end_together_within_the_limit(tmp_path):
    # Review: each folder had its own limit, and shutil.rmtree (which nothing stops) ran first: a kernel's
    # many files could hold the signal path past a batch system's SIGKILL.
    trees = []
    for n in range(3):
        tree = tmp_path / f"tree{n}"
        tree.mkdir()
        for i in range(3000):
            (tree / str(i)).write_text("")
        trees.append(tree)
    start = time.monotonic()
    with folders.removals_within(0.0):
        assert not any(folders.remove_tree(tree) for tree in trees)  # no time left: nothing is even tried
    assert time.monotonic() - start < 1.0 and all(tree.exists() for tree in trees)
    with folders.removals_within(60):
        assert all(folders.remove_tree(tree) for tree in trees)
    assert folders._removals_deadline is None


def test_a_nested_limit_never_extends_the_outer_one():
    # Review (left open before): the inner `with` replaced the outer deadline, so 60 s inside 0.5 s gave 60 s.
    with folders.removals_within(0.5):
        outer = folders._removals_deadline
        with folders.removals_within(60):
            assert folders._removals_deadline == outer
        with folders.removals_within(0.0):
            assert folders._removals_deadline < outer
        assert folders._removals_deadline == outer
    assert folders._removals_deadline is None


def test_the_fallback_chmod_never_follows_a_link_that_took_the_folders_name(tmp_path, monkeypatch):
    # Review: `chmod -R u+rwx PATH` follows PATH when it is a link; an entry swapped for a link to another
    # folder between the check and chmod had that folder's modes changed.
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "secret").write_text("x")
    os.chmod(victim / "secret", 0o400)
    entry = tmp_path / "entry"
    entry.mkdir()
    real_run, calls = subprocess.run, []

    def run(command, *args, **kwargs):
        calls.append(command[0])
        if calls == ["rm"]:
            return None  # as if rm could not remove it (a folder without write permission, as a non-root user)
        if command[0] == "chmod":  # a link takes the folder's name just before chmod runs
            entry.rename(tmp_path / "moved")
            entry.symlink_to(victim)
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(folders.subprocess, "run", run)
    folders.remove_tree(entry, timeout_s=5)
    monkeypatch.undo()
    assert calls == ["rm", "chmod", "rm"] and not os.path.lexists(entry)
    assert stat.S_IMODE(os.stat(victim / "secret").st_mode) == 0o400


def test_a_signal_during_an_ordinary_close_still_ends_the_warm_parent(tmp_path):
    # Review: close() marked itself closed before its work; a signal handler's close(now=True) while the
    # ordinary close waited for the parent to say goodbye returned at once, and the handler's os._exit
    # left the sandbox (its own session) running with the student's kernels.
    import threading

    zygote = Zygote.__new__(Zygote)
    zygote.root = make_private_dir(tmp_path)
    zygote.process = subprocess.Popen(["sleep", "1000"], stdin=subprocess.PIPE, text=True, start_new_session=True)
    ended_by_handler = []

    def handler():  # what _exit_now does, just before os._exit
        zygote.close(now=True)
        ended_by_handler.append(zygote.process.poll() is not None)

    timer = threading.Timer(0.5, handler)
    timer.start()
    try:
        zygote.close()  # waits up to 5 s for a goodbye that never comes
    finally:
        timer.join()
        zygote.process.kill()
    assert ended_by_handler == [True], "the handler's close left the warm parent running"
