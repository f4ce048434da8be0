"""What a Dask task carries and brings back (torchsteps.grading.cluster), without a cluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import ASSIGNMENT, copy_course
from torchsteps.grading.cluster import ClusterError, _regular_files, _write_back, course_bundle, grade_on_cluster
from torchsteps.grading.course import open_api
from torchsteps.grading.driver import grade_submission


@pytest.fixture()
def api(tmp_path):
    return open_api(copy_course(tmp_path / "course", demo_class=True))


def test_the_bundle_is_the_config_and_the_assignments_source(api):
    root = api.coursedir.root
    source = f"{root}/source/{ASSIGNMENT}"
    os.symlink(f"{root}/nbgrader_config.py", f"{source}/link_to_config.py")
    bundle = course_bundle(api, ASSIGNMENT, {"ada"}, {"nb": frozenset({"x"})}, feedback=True)
    names = set(bundle.files)
    assert "nbgrader_config.py" in names and f"source/{ASSIGNMENT}/checks.py" in names
    release = {n for n in names if n.startswith(f"release/{ASSIGNMENT}/")}
    assert release == {f"release/{ASSIGNMENT}/checks.py"}, "the handed-out files, not the release's notebooks or wheel"
    assert all(n == "nbgrader_config.py" or n.startswith(f"source/{ASSIGNMENT}/") for n in names - release), names
    assert f"source/{ASSIGNMENT}/link_to_config.py" not in names, "links are never followed into the bundle"
    assert bundle.db_url == api.coursedir.db_url and bundle.roster_ids == frozenset({"ada"})
    again = course_bundle(api, ASSIGNMENT, {"ada"}, {"nb": frozenset({"x"})}, feedback=True)
    assert again.digest == bundle.digest
    checks = Path(source) / "checks.py"
    checks.write_text(checks.read_text() + "\n# changed\n")
    assert course_bundle(api, ASSIGNMENT, {"ada"}, {}, feedback=True).digest != bundle.digest


def test_a_submission_travels_without_links_or_checkpoints(tmp_path):
    folder = tmp_path / "sub"
    (folder / ".ipynb_checkpoints").mkdir(parents=True)
    (folder / ".ipynb_checkpoints" / "a-checkpoint.ipynb").write_text("{}")
    (folder / "a.ipynb").write_text("{}")
    (folder / "data").mkdir()
    (folder / "data" / "x.txt").write_text("x")
    secret = tmp_path / "secret.txt"
    secret.write_text("instructor only")
    os.symlink(secret, folder / "b.ipynb")
    os.symlink(tmp_path, folder / "up")
    assert _regular_files(folder) == {"a.ipynb": b"{}", "data/x.txt": b"x"}


def test_returned_files_land_only_in_the_students_folders(api, tmp_path):
    _write_back(api, ASSIGNMENT, "ada", {"autograded": {"a.ipynb": b"1", "../../../escaped.txt": b"no"},
                                         "feedback": {"a.html": b"<p>"}})
    root = tmp_path / "course"
    assert (root / "autograded" / "ada" / ASSIGNMENT / "a.ipynb").read_bytes() == b"1"
    assert (root / "feedback" / "ada" / ASSIGNMENT / "a.html").read_bytes() == b"<p>"
    assert not list(root.rglob("escaped.txt")) and not list(tmp_path.rglob("escaped.txt"))


def test_a_sqlite_gradebook_is_refused_before_anything_is_sent(api):
    with pytest.raises(ClusterError, match="PostgreSQL|postgresql"):
        next(grade_on_cluster(api, grade_submission, ASSIGNMENT, ["ada"], {"ada"}, {}, True, "tcp://127.0.0.1:1"))


def test_a_worker_sees_the_handed_out_files(api, tmp_path):
    """Regression: the workers' copy had no release/, so the sandboxes got no checks.py and every test cell
    failed with ``No module named 'checks'`` on the cluster (a local run of the same class scored 11/11)."""
    from torchsteps.grading.cluster import _worker_api
    from torchsteps.nbgrader_plugins.execute import handed_out_files

    bundle = course_bundle(api, ASSIGNMENT, {"ada"}, {}, feedback=True)
    worker = _worker_api(bundle, tmp_path / "worker")
    assert handed_out_files(worker.config, ASSIGNMENT) == ["checks.py"]


def test_a_task_writes_the_submission_and_puts_the_clients_notes_first(api, tmp_path, monkeypatch):
    # Without a cluster: the worker's context (its folder, the cluster-wide lock) is stood in for.
    import contextlib
    from types import SimpleNamespace

    import distributed

    from torchsteps.grading.cluster import SubmittedFiles, grade_task
    from torchsteps.results.status import Status, SubmissionResult

    monkeypatch.setattr(distributed, "get_worker", lambda: SimpleNamespace(local_directory=str(tmp_path / "worker")))
    monkeypatch.setattr(distributed, "Lock", lambda name: contextlib.nullcontext())
    seen = {}

    def grade_one(worker_api, assignment_id, student_id, roster, expected, feedback):
        folder = Path(worker_api.coursedir.root) / "submitted" / student_id / assignment_id
        seen.update({p.relative_to(folder).as_posix(): p.is_dir() for p in folder.rglob("*")})
        return SubmissionResult(student_id, assignment_id, status=Status.GRADED, notes=["from the worker"])

    bundle = course_bundle(api, ASSIGNMENT, {"ada"}, {}, feedback=False)
    submission = SubmittedFiles(files={"a.ipynb": b"{}", "data/x.txt": b"x", "../../escaped.txt": b"no"},
                                folders=("empty", "data", "../outside"), notes=("left out, not followed: l (a link)",))
    result, _back = grade_task(bundle, grade_one, "ada", submission)
    assert seen == {"a.ipynb": False, "data": True, "data/x.txt": False, "empty": True}
    assert result.notes == ["left out, not followed: l (a link)", "from the worker"]
    assert not list(tmp_path.rglob("escaped.txt")) and not list(tmp_path.rglob("outside"))


def _stand_in_cluster(api, monkeypatch, students, on_submit=None, on_wait=None, roster=None):
    """grade_on_cluster's results for ``students`` (each with a notebook) through a stand-in Dask client with one
    worker thread, whose tasks finish in student order; ``on_submit(student, sent)``/``on_wait(sent)`` may raise.
    Returns ``(results, events)``: events are ("sent", student) and ("in flight", n) in order."""
    import distributed

    from torchsteps.grading import cluster
    from torchsteps.results.status import Status, SubmissionResult

    root = Path(api.coursedir.root)
    for student in students:
        (root / "submitted" / student / ASSIGNMENT).mkdir(parents=True)
        (root / "submitted" / student / ASSIGNMENT / "n.ipynb").write_text("{}")
    events, sent = [], []

    class Future:
        def __init__(self, student):
            self.student = student

        def result(self):
            return SubmissionResult(self.student, ASSIGNMENT, status=Status.GRADED), {}

        def release(self):
            if on_wait or on_submit:
                raise RuntimeError("client closed")  # as on a closed client: never stops the loop

        cancel = release

    class Client:
        def __init__(self, *args, **kwargs):
            pass

        register_plugin = close = lambda self, *a, **k: None
        scatter = lambda self, data, **k: data
        nthreads = lambda self: {"w1": 1}
        scheduler_info = lambda self, **k: {}

        def submit(self, fn, bundle, grade_one, student, submission, **kwargs):
            if on_submit:
                on_submit(student, sent)
            sent.append(student)
            events.append(("sent", student))
            return Future(student)

    def wait(pending, timeout, return_when):
        if on_wait:
            on_wait(sent)
        events.append(("in flight", len(pending)))
        first = min(pending, key=lambda f: f.student)
        return {first}, set(pending) - {first}

    monkeypatch.setattr(distributed, "Client", Client)
    monkeypatch.setattr(distributed, "wait", wait)
    monkeypatch.setattr(api.coursedir, "db_url", "postgresql://nobody@nowhere/db")
    results = list(cluster.grade_on_cluster(api, grade_submission, ASSIGNMENT, students,
                                            set(students) if roster is None else roster, {}, False, "tcp://127.0.0.1:1"))
    return results, events


def test_the_client_holds_a_few_submissions_at_a_time_not_the_class(api, monkeypatch):
    # Review: every student's files (up to 500 MiB each) were read and submitted before the first result.
    students = [f"s{i:02}" for i in range(20)]
    results, events = _stand_in_cluster(api, monkeypatch, students)
    assert sorted(r.student_id for r in results) == students
    assert max(n for what, n in events if what == "in flight") == 4  # 2 per worker thread, at least 4
    assert events[:5] == [("sent", "s00"), ("sent", "s01"), ("sent", "s02"), ("sent", "s03"), ("in flight", 4)]


@pytest.mark.parametrize("breaks", ["submit", "wait"])
def test_a_scheduler_that_goes_away_gives_every_student_a_row(api, monkeypatch, breaks):
    # Review: with tasks sent a few at a time, a closed client raised out of the loop (ClosedClientError from
    # submit, ValueError from wait), and no row of the run was written.
    import distributed

    from torchsteps.results.status import Status

    def closed_at_six(student, sent):
        if len(sent) == 6:
            raise distributed.client.ClosedClientError("the client was closed")

    def gone_after_six(sent):
        if len(sent) >= 6:
            raise ValueError("No clients found")

    students = [f"s{i:02}" for i in range(10)]
    results, _ = _stand_in_cluster(api, monkeypatch, students, on_submit=closed_at_six if breaks == "submit" else None,
                                   on_wait=gone_after_six if breaks == "wait" else None)
    assert sorted(r.student_id for r in results) == students  # one row each, none lost, none twice
    graded = [r.student_id for r in results if r.status is Status.GRADED]
    lost = [r for r in results if r.status is Status.ERROR]
    assert graded and lost and all("the Dask scheduler at tcp://127.0.0.1:1 could no longer be used" in r.reason for r in lost)


def test_a_student_not_on_the_roster_gets_the_local_reason_before_any_file_is_read(api, monkeypatch):
    # Review: the Dask client read the files first, so an unreadable file gave "could not read" where a local
    # run says "not on the roster" (c.Autograde.create_student = False in this course).
    from torchsteps.grading import submission_files

    real_open = submission_files._open_regular

    def refuse_zed(path):
        if "/zed/" in str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(path)

    monkeypatch.setattr(submission_files, "_open_regular", refuse_zed)
    results, events = _stand_in_cluster(api, monkeypatch, ["yan", "zed"], roster={"yan"})
    rows = {r.student_id: r for r in results}
    assert rows["zed"].reason.startswith("student 'zed' is not on the roster"), rows["zed"].reason
    assert ("sent", "zed") not in events and ("sent", "yan") in events
