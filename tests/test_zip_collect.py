"""Submissions from an LMS bulk download: ``collect_lms_downloads`` (nbgrader zip_collect) fills submitted/.

Unit level: no kernel runs here. A temporary course gets a Blackboard-style download in
``downloaded/pytorch_basics/archive/``; collecting must put each student's notebook, byte for byte,
into ``submitted/<student>/pytorch_basics/``, report every file it skipped by name, leave the
download untouched, give the same result when run again, and report a damaged archive instead of
failing. The same config also drives the plain ``nbgrader zip_collect`` command.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile

import nbformat
import pytest

from conftest import ASSIGNMENT, REPO, copy_course, tree_digest
from torchsteps.nbgrader_plugins.collect import NAMED_REGEXP, LmsFileNameCollectorPlugin, collect_lms_downloads
from torchsteps.grading.course import open_api
from torchsteps.authoring.demo_submissions import instructor_answers
from torchsteps.authoring.submissions import fill_solutions

NOTEBOOK = "02_creating_tensors"

ADA_NEW = f"pytorch_basics_ada_attempt_2024-03-01-14-05-09_{NOTEBOOK}.ipynb"
ADA_OLD = f"pytorch_basics_ada_attempt_2024-02-28-09-00-00_{NOTEBOOK}.ipynb"
JO = f"pytorch_basics_jo.mensah_attempt_2024-12-31-23-59-59_{NOTEBOOK} (1).ipynb"
STRAY_NOTEBOOK = "notes from the TA.ipynb"
RECEIPT = "pytorch_basics_ada_attempt_2024-03-01-14-05-09.txt"
MACOS = f"__MACOSX/._{ADA_NEW}"


def _course(tmp_path):
    # The course's own nbgrader_config.py holds the LMS settings (collector, regexp, timestamp format).
    return copy_course(tmp_path / "course", demo_class=False)


def _notebooks(course):
    """(correct, blank) student versions of 02_creating_tensors, as the bytes a student would upload."""
    source = nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    release = nbformat.read(str(course / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    correct = fill_solutions(release, instructor_answers(source))
    blank = fill_solutions(release, {})
    return nbformat.writes(correct).encode(), nbformat.writes(blank).encode()


def _zip(path, members: dict[str, bytes]):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _archive(course):
    return course / "downloaded" / ASSIGNMENT / "archive"


@pytest.fixture
def lms_course(tmp_path):
    course = _course(tmp_path)
    correct, blank = _notebooks(course)
    download = _zip(_archive(course) / "gradebook_pytorch_basics.zip", {
        ADA_OLD: blank,
        ADA_NEW: correct,
        JO: blank,
        STRAY_NOTEBOOK: blank,
        RECEIPT: b"Name: Ada Lindqvist\nAssignment: pytorch_basics\n",
        MACOS: b"\0\5\26\7 AppleDouble",
    })
    return course, download, correct, blank


def test_download_is_collected_into_submitted(lms_course):
    course, download, correct, blank = lms_course
    digest, stat = _sha(download), download.stat()
    notes = collect_lms_downloads(open_api(course), ASSIGNMENT)
    text = "\n".join(notes)

    submitted = course / "submitted"
    assert sorted(p.name for p in submitted.iterdir()) == ["ada", "jo.mensah"], text
    ada = submitted / "ada" / ASSIGNMENT
    jo = submitted / "jo.mensah" / ASSIGNMENT
    assert sorted(p.name for p in ada.iterdir()) == [f"{NOTEBOOK}.ipynb", "timestamp.txt"]
    assert sorted(p.name for p in jo.iterdir()) == [f"{NOTEBOOK}.ipynb", "timestamp.txt"]
    # The newest attempt wins; the " (1)" of a second browser download is dropped from the name.
    assert (ada / f"{NOTEBOOK}.ipynb").read_bytes() == correct
    assert (jo / f"{NOTEBOOK}.ipynb").read_bytes() == blank
    source = nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"), as_version=4)
    answers = instructor_answers(source)
    got = nbformat.read(str(ada / f"{NOTEBOOK}.ipynb"), as_version=4)
    solutions = {c.metadata.nbgrader["grade_id"]: c.source for c in got.cells if c.metadata.get("nbgrader", {}).get("solution")}
    assert solutions == answers
    # Blackboard's time of the attempt, read with timestamp_format (dateutil misreads it: "-14-05-09" as a time zone).
    assert (ada / "timestamp.txt").read_text() == "2024-03-01 14:05:09"
    assert (jo / "timestamp.txt").read_text() == "2024-12-31 23:59:59"

    # The instructor's download is untouched.
    assert _sha(download) == digest and download.stat().st_mtime_ns == stat.st_mtime_ns
    assert sorted(p.name for p in _archive(course).iterdir()) == [download.name]

    # Notes: what was collected per student, and every skipped file by name, with the reason.
    assert any("ada: collected" in n and f"{NOTEBOOK}.ipynb" in n and "2024-03-01 14:05:09" in n for n in notes), text
    assert any("jo.mensah: collected" in n and f"{NOTEBOOK}.ipynb" in n for n in notes), text
    stray = [n for n in notes if STRAY_NOTEBOOK in n]
    assert len(stray) == 1 and "skipped" in stray[0] and "does not follow the LMS pattern" in stray[0], text
    receipt = [n for n in notes if RECEIPT in n]
    assert len(receipt) == 1 and "not a notebook" in receipt[0], text
    older = [n for n in notes if ADA_OLD in n]
    assert len(older) == 1 and "older attempt" in older[0], text
    assert any("__MACOSX" in n and "macOS metadata" in n for n in notes), text
    assert not any("failed" in n or "cannot read" in n for n in notes), text


def test_collecting_again_gives_the_same_submitted(lms_course):
    course, download, _, _ = lms_course
    api = open_api(course)
    first = collect_lms_downloads(api, ASSIGNMENT)
    before = tree_digest(course / "submitted")
    # A stale file in a collected student's folder goes: the download replaces the whole folder.
    (course / "submitted" / "ada" / ASSIGNMENT / "stale.ipynb").write_text("{}")
    second = collect_lms_downloads(api, ASSIGNMENT)
    assert second == first
    assert tree_digest(course / "submitted") == before


def test_students_not_in_the_download_are_left_alone(lms_course):
    course, _, _, _ = lms_course
    other = course / "submitted" / "ben" / ASSIGNMENT
    other.mkdir(parents=True)
    (other / f"{NOTEBOOK}.ipynb").write_text("ben's own copy")
    collect_lms_downloads(open_api(course), ASSIGNMENT)
    assert (other / f"{NOTEBOOK}.ipynb").read_text() == "ben's own copy"


def test_nothing_to_collect_changes_nothing(tmp_path):
    course = _course(tmp_path)
    api = open_api(course)
    assert collect_lms_downloads(api, ASSIGNMENT) == []
    assert not (course / "downloaded").exists() and not (course / "submitted").exists()
    _archive(course).mkdir(parents=True)
    assert collect_lms_downloads(api, ASSIGNMENT) == []
    assert not (course / "downloaded" / ASSIGNMENT / "extracted").exists()


def test_a_damaged_download_is_reported_and_the_rest_collected(tmp_path):
    course = _course(tmp_path)
    correct, blank = _notebooks(course)
    good = _zip(_archive(course) / "good.zip", {ADA_NEW: correct})
    not_a_zip = _archive(course) / "truncated.zip"
    not_a_zip.write_bytes(good.read_bytes()[:200])
    # A complete zip whose stored member was damaged in transit: the CRC check fails.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        z.writestr(JO, blank)
    data = bytearray(buffer.getvalue())
    data[data.index(b'"cells"')] ^= 0xFF
    crc = _archive(course) / "crc.zip"
    crc.write_bytes(bytes(data))
    # A member that would be written outside extracted/ (zip slip): the archive is refused.
    _zip(_archive(course) / "slip.zip", {f"../../../submitted/eve/{ASSIGNMENT}/{NOTEBOOK}.ipynb": correct, JO: blank})
    before = {p.name: _sha(p) for p in _archive(course).iterdir()}

    notes = collect_lms_downloads(open_api(course), ASSIGNMENT)
    text = "\n".join(notes)
    truncated = [n for n in notes if "truncated.zip" in n]
    assert len(truncated) == 1 and "cannot read" in truncated[0] and "not a zip or tar archive" in truncated[0], text
    damaged = [n for n in notes if "crc.zip" in n]
    assert len(damaged) == 1 and "cannot read" in damaged[0] and "CRC" in damaged[0], text
    slip = [n for n in notes if "slip.zip" in n]
    assert len(slip) == 1 and "cannot read" in slip[0] and "outside" in slip[0], text
    assert not (course / "downloaded" / ASSIGNMENT / "extracted" / "slip").exists()
    assert (course / "submitted" / "ada" / ASSIGNMENT / f"{NOTEBOOK}.ipynb").read_bytes() == correct
    assert sorted(p.name for p in (course / "submitted").iterdir()) == ["ada"], text
    assert {p.name: _sha(p) for p in _archive(course).iterdir()} == before


def test_only_a_damaged_download(tmp_path):
    course = _course(tmp_path)
    (_archive(course)).mkdir(parents=True)
    (_archive(course) / "download.zip").write_bytes(b"<html>Session expired</html>")
    notes = collect_lms_downloads(open_api(course), ASSIGNMENT)
    assert any("cannot read" in n and "download.zip" in n for n in notes), notes
    assert any("no submission found" in n for n in notes), notes
    assert not (course / "submitted").exists()


_PREFIX = "/course/downloaded/pytorch_basics/extracted/gradebook/"


@pytest.mark.parametrize("name, student, notebook, when", [
    (f"pytorch_basics_ada_attempt_2024-03-01-14-05-09_{NOTEBOOK}.ipynb", "ada", f"{NOTEBOOK}.ipynb", "2024-03-01 14:05:09"),
    (f"pytorch_basics_s1234567_attempt_2024-03-01-14-05-09_{NOTEBOOK} (1).ipynb", "s1234567", f"{NOTEBOOK}.ipynb", "2024-03-01 14:05:09"),
    (f"pytorch_basics_jo.mensah_attempt_2024-12-31-23-59-59_{NOTEBOOK}.ipynb", "jo.mensah", f"{NOTEBOOK}.ipynb", "2024-12-31 23:59:59"),
    (f"PyTorch Basics (week 2)_ada_attempt_2024-03-01-14-05-09_{NOTEBOOK}.ipynb", "ada", f"{NOTEBOOK}.ipynb", "2024-03-01 14:05:09"),
    ("pytorch_basics_ada_attempt_2024-03-01-14-05-09_Copy of 02_creating_tensors.ipynb", "ada", "Copy of 02_creating_tensors.ipynb", "2024-03-01 14:05:09"),
    ("pytorch_basics_ada_attempt_2024-03-01-14-05-09_v1.2_lab.ipynb", "ada", "v1.2_lab.ipynb", "2024-03-01 14:05:09"),
    (f"{NOTEBOOK}.ipynb", None, None, None),
    (f"pytorch_basics_ada_{NOTEBOOK}.ipynb", None, None, None),
    (f"pytorch_basics_ada_attempt_2024-03-01_{NOTEBOOK}.ipynb", None, None, None),
    (f"pytorch_basics_ada_attempt_2024-03-01-14-05-09_{NOTEBOOK}.py", None, None, None),
    (f"pytorch_basics_.._attempt_2024-03-01-14-05-09_{NOTEBOOK}.ipynb", None, None, None),
    (f"pytorch_basics_ada_attempt_2024-13-01-14-05-09_{NOTEBOOK}.ipynb", None, None, None),
    (f"._pytorch_basics_ada_attempt_2024-03-01-14-05-09_{NOTEBOOK}.ipynb", None, None, None),
])
def test_file_names(name, student, notebook, when):
    plugin = LmsFileNameCollectorPlugin()
    info = plugin.collect(_PREFIX + name)
    if student is None:
        assert info is None and plugin.skipped[_PREFIX + name]
        return
    assert (info["student_id"], info["file_id"], f"{info['timestamp']:%Y-%m-%d %H:%M:%S}") == (student, notebook, when)


def test_config_lines_set_the_documented_regexp(tmp_path):
    api = open_api(_course(tmp_path))
    assert api.config.FileNameCollectorPlugin.named_regexp == NAMED_REGEXP


def test_plain_nbgrader_zip_collect_gives_the_same_result(lms_course, tmp_path):
    """The instructor's manual route (README: `nbgrader zip_collect pytorch_basics --force`) uses the same config."""
    course, _, _, _ = lms_course
    collect_lms_downloads(open_api(course), ASSIGNMENT)
    expected = tree_digest(course / "submitted")
    other = _course(tmp_path / "cli")
    shutil.copytree(_archive(course), _archive(other))
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    run = subprocess.run(
        [sys.executable, "-m", "nbgrader", "zip_collect", ASSIGNMENT, "--force"],
        cwd=other, capture_output=True, text=True, timeout=300, env=env,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert tree_digest(other / "submitted") == expected


def test_an_archive_a_student_uploaded_is_not_unpacked_so_its_names_claim_nothing(tmp_path):
    # Review: nbgrader's extractor unpacked archives inside the download (tree=True), and the names inside a
    # student's zip were collected like the LMS's: ada backdated her attempt (no late penalty) and replaced
    # bob's notebook with an attempt dated 2030.
    course = _course(tmp_path)
    correct, blank = _notebooks(course)
    inner = tmp_path / "mywork.zip"
    _zip(inner, {f"pytorch_basics_ada_attempt_2020-01-01-00-00-00_{NOTEBOOK}.ipynb": blank,
                 f"pytorch_basics_bob_attempt_2030-01-01-00-00-00_{NOTEBOOK}.ipynb": b"{}"})
    uploaded = "pytorch_basics_ada_attempt_2026-03-09-23-00-00_mywork.zip"
    _zip(_archive(course) / "gradebook_pytorch_basics.zip", {
        f"pytorch_basics_bob_attempt_2026-03-01-10-00-00_{NOTEBOOK}.ipynb": correct,
        uploaded: inner.read_bytes(),
    })
    notes = collect_lms_downloads(open_api(course), ASSIGNMENT)
    text = "\n".join(notes)
    submitted = course / "submitted"
    assert sorted(p.name for p in submitted.iterdir()) == ["bob"], text
    assert (submitted / "bob" / ASSIGNMENT / f"{NOTEBOOK}.ipynb").read_bytes() == correct
    assert (submitted / "bob" / ASSIGNMENT / "timestamp.txt").read_text() == "2026-03-01 10:00:00"
    skipped = [n for n in notes if uploaded in n]
    assert len(skipped) == 1 and "not unpacked" in skipped[0], text
    assert not list((course / "downloaded" / ASSIGNMENT / "extracted").rglob("*2030*")), "the inner zip was unpacked"


@pytest.mark.parametrize("layout", ["unzipped download", "attempt at the top"])
def test_a_students_archive_is_not_unpacked_in_any_layout(tmp_path, layout):
    # Review: a download the browser had unzipped (a folder in archive/) still had the student's zip unpacked,
    # as was one dropped at the top of archive/ under its LMS name: bob's attempt was replaced, dated 2020.
    course = _course(tmp_path)
    correct, _ = _notebooks(course)
    inner = tmp_path / "work.zip"
    _zip(inner, {f"pytorch_basics_bob_attempt_2020-01-01-00-00-00_{NOTEBOOK}.ipynb": b"{}"})
    uploaded = "pytorch_basics_jo_attempt_2026-03-09-10-00-00_work.zip"
    where = _archive(course) / "gradebook_pytorch_basics" if layout == "unzipped download" else _archive(course)
    where.mkdir(parents=True)
    (where / f"pytorch_basics_bob_attempt_2026-03-01-10-00-00_{NOTEBOOK}.ipynb").write_bytes(correct)
    (where / uploaded).write_bytes(inner.read_bytes())
    notes = collect_lms_downloads(open_api(course), ASSIGNMENT)
    text = "\n".join(notes)
    assert (course / "submitted" / "bob" / ASSIGNMENT / f"{NOTEBOOK}.ipynb").read_bytes() == correct, text
    assert (course / "submitted" / "bob" / ASSIGNMENT / "timestamp.txt").read_text() == "2026-03-01 10:00:00"
    skipped = [n for n in notes if uploaded in n]
    assert len(skipped) == 1 and "not unpacked" in skipped[0], text
