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
