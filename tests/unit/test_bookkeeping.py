"""Fast tier (no kernel): the terminal table, submission digests, feedback zips, the roster import, no exchange."""

from __future__ import annotations

import io
import logging
import shutil
import zipfile
from types import SimpleNamespace

import pytest
from nbgrader.api import Gradebook
from rich.console import Console

from conftest import ASSIGNMENT, copy_course
from torchsteps.grading.archives import write_feedback_archives
from torchsteps.grading.incremental import submission_digest
from torchsteps.results.export import ExerciseColumn, GradeRow
from torchsteps.results.table import print_grades

# --- the table ------------------------------------------------------------------------------------------

NOTEBOOKS = {"01_numpy_and_pytorch": 6, "02_creating_tensors": 5, "03_dtypes_and_casting": 6, "04_devices": 5, "05_common_errors": 7}
COLUMNS = [ExerciseColumn(nb, f"test_{nb[:2]}_{i}", 2.0) for nb, n in NOTEBOOKS.items() for i in range(n)]
LONG_REASON = "01_numpy_and_pytorch.ipynb: not valid notebook JSON (Expecting property name enclosed in double quotes: line 1 column 2)"


def _rows():
    full = {c.key: c.max_score for c in COLUMNS}
    return [
        GradeRow("ada", ASSIGNMENT, "graded", full, 58.0, 58.0),
        GradeRow("ben", ASSIGNMENT, "error", {}, 0.0, 58.0, reason=LONG_REASON),
        GradeRow("kim", ASSIGNMENT, "graded", dict(full, **{COLUMNS[0].key: 0.0}), 56.0, 58.0,
                 flags=("01_numpy_and_pytorch: cell 17, line 2: assigns checks.check_tensor",)),
    ]


def _printed(width: int) -> str:
    out = io.StringIO()
    print_grades(COLUMNS, _rows(), Console(file=out, width=width, color_system=None))
    return out.getvalue()


@pytest.mark.parametrize("width", [60, 80, 120])
def test_a_narrow_terminal_gets_one_column_per_notebook_and_nothing_is_cut(width):
    out = _printed(width)
    assert max(len(line) for line in out.splitlines()) <= width
    assert "points per notebook" in out and "…" not in out  # nothing truncated
    table = out[:out.index("Reasons and flags:")]
    ada = next(line for line in table.splitlines() if "ada" in line)
    assert [c.strip() for c in ada.strip("│").split("│")] == ["ada", "12", "10", "12", "10", "14", "58/58", "graded"], ada
    # each reason and flag whole, on its own line under the table; never inside it
    notes = " ".join(out[out.index("Reasons and flags:"):].split())
    assert f"- ben (error): {LONG_REASON}" in notes
    assert "- kim (review, possible tampering): 01_numpy_and_pytorch: cell 17, line 2: assigns checks.check_tensor" in notes
    assert "Expecting" not in table and "check_tensor" not in table


def test_a_wide_terminal_gets_one_column_per_exercise():
    out = _printed(250)
    header = next(line for line in out.splitlines() if "student" in line)
    assert [c.strip() for c in header.strip("┃").split("┃")] == ["student", *[f"{n}.{i + 1}" for n, k in enumerate(NOTEBOOKS.values(), 1) for i in range(k)], "total", "status"]
    assert max(len(line) for line in out.splitlines()) <= 250


# --- digests and zips ------------------------------------------------------------------------------------


def _coursedir(root):
    return SimpleNamespace(root=str(root), submitted_directory="submitted", source_directory="source",
                           feedback_directory="feedback", autograded_directory="autograded")


def test_the_digest_changes_with_the_submission_the_source_or_the_config_only(tmp_path):
    for path, text in {"submitted/ada/a/n.ipynb": "{}", "submitted/ben/a/n.ipynb": "{}", "source/a/n.ipynb": "{1}",
                       "nbgrader_config.py": "c = 1", "release/a/n.ipynb": "x", "students.csv": "id\n"}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    cd = _coursedir(tmp_path)
    digest = lambda: (submission_digest(cd, "a", "ada"), submission_digest(cd, "a", "ben"))
    first = digest()
    assert first[0] == first[1]  # same files: same digest (it names no student)
    (tmp_path / "students.csv").write_text("id\nada\n")
    (tmp_path / "release/a/n.ipynb").write_text("y")
    assert digest() == first
    (tmp_path / "submitted/ada/a/n.ipynb").write_text("{ }")
    assert digest()[0] != first[0] and digest()[1] == first[1]
    (tmp_path / "submitted/ada/a/n.ipynb").write_text("{}")
    (tmp_path / "submitted/ada/a/timestamp.txt").write_text("2026-11-30")
    assert digest()[0] != first[0]
    for path in ("source/a/n.ipynb", "nbgrader_config.py"):
        before = digest()
        (tmp_path / path).write_text("changed")
        assert digest()[0] != before[0] and digest()[1] != before[1], path


def test_the_digest_reads_what_staging_copies_and_never_stops_the_class(tmp_path, monkeypatch):
    # Review: a file the grading user may not read raised PermissionError before any student was graded;
    # a decomposed-Unicode folder (zoë from a Mac) was never part of its digest, so a resubmission stayed
    # "unchanged"; a link was followed (a linked file's target counted, a link to a FIFO would block).
    import os
    import pathlib
    import unicodedata

    nfd = unicodedata.normalize("NFD", "zoë")
    folder = tmp_path / "submitted" / nfd / "a"
    folder.mkdir(parents=True)
    (folder / "n.ipynb").write_text("{}")
    (tmp_path / "target.txt").write_text("1")
    (folder / "linked.txt").symlink_to(tmp_path / "target.txt")
    os.mkfifo(folder / "pipe")
    cd = _coursedir(tmp_path)
    first = submission_digest(cd, "a", "zoë")  # the roster's id, NFC
    (tmp_path / "target.txt").write_text("2")
    assert submission_digest(cd, "a", "zoë") == first  # the link is not followed (staging leaves it out)
    (folder / "n.ipynb").write_text("{ }")
    changed = submission_digest(cd, "a", "zoë")
    assert changed != first  # the NFD folder's files are in the digest
    (folder / "secret.txt").write_text("x")
    real_open, real_read = os.open, pathlib.Path.read_bytes

    def refuse(path, *args, **kwargs):  # as for a grading user who may not read it (root may)
        if os.fspath(path).endswith("secret.txt"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    monkeypatch.setattr(pathlib.Path, "read_bytes", lambda self: refuse(self) and real_read(self))
    unreadable = submission_digest(cd, "a", "zoë")  # no exception: grading goes on and names the file
    assert unreadable not in (first, changed)


def test_feedback_zips_hold_each_students_feedback_and_are_reproducible(tmp_path):
    for student in ("ada", "ben"):
        folder = tmp_path / "feedback" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / "01.html").write_text(f"<p>{student}</p>")
        (folder / "02.html").write_text("<p>2</p>")
    (tmp_path / "feedback" / "cleo" / "other_assignment").mkdir(parents=True)
    cd = _coursedir(tmp_path)
    written = write_feedback_archives(cd, ASSIGNMENT)
    assert [p.name for p in written] == ["ada.zip", "ben.zip"]
    with zipfile.ZipFile(written[0]) as zf:
        assert zf.namelist() == [f"{ASSIGNMENT}/01.html", f"{ASSIGNMENT}/02.html"]
        assert zf.read(f"{ASSIGNMENT}/01.html") == b"<p>ada</p>"
    first = {p.name: p.read_bytes() for p in written}
    shutil.rmtree(tmp_path / "feedback" / "ben")
    again = write_feedback_archives(cd, ASSIGNMENT)
    assert [p.name for p in again] == ["ada.zip"] and again[0].read_bytes() == first["ada.zip"]
    assert not (tmp_path / "feedback_zips" / ASSIGNMENT / "ben.zip").exists()  # no stale feedback


def test_feedback_zips_are_rewritten_only_when_the_feedback_changed(tmp_path):
    folder = tmp_path / "feedback" / "ada" / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / "01.html").write_text("<p>first</p>")
    cd = _coursedir(tmp_path)
    (archive,) = write_feedback_archives(cd, ASSIGNMENT)
    stamp = archive.stat().st_mtime_ns
    write_feedback_archives(cd, ASSIGNMENT)
    assert archive.stat().st_mtime_ns == stamp, "nothing changed: the archive is kept"
    (folder / "01.html").write_text("<p>regraded</p>")  # a file changed
    write_feedback_archives(cd, ASSIGNMENT)
    with zipfile.ZipFile(archive) as zf:
        assert zf.read(f"{ASSIGNMENT}/01.html") == b"<p>regraded</p>"
    (folder / "02.html").write_text("<p>new</p>")  # a file added
    write_feedback_archives(cd, ASSIGNMENT)
    with zipfile.ZipFile(archive) as zf:
        assert zf.namelist() == [f"{ASSIGNMENT}/01.html", f"{ASSIGNMENT}/02.html"]
    (folder / "02.html").unlink()  # a file removed: the folder's own time changes
    write_feedback_archives(cd, ASSIGNMENT)
    with zipfile.ZipFile(archive) as zf:
        assert zf.namelist() == [f"{ASSIGNMENT}/01.html"]


# --- the roster and the exchange, through nbgrader's API --------------------------------------------------


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from torchsteps.grading.course import open_api

    course = copy_course(tmp_path_factory.mktemp("book") / "course", demo_class=False)
    return open_api(course)


def test_the_roster_csv_is_imported_with_nbgrader_and_a_bad_one_is_refused(api, tmp_path):
    from torchsteps.grading.course import RosterError, import_students, register_roster

    known = register_roster(api)
    assert len(known) == 12 and "ada" in known
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        ada = gb.find_student("ada")
        assert (ada.first_name, ada.last_name, ada.email) == ("Ada", "Lindqvist", "ada@students.example.org")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,email\nZoe,z@x\n")
    with pytest.raises(RosterError, match="must contain a column for 'id'"):
        import_students(api, bad)


def test_a_course_without_the_exchange_gets_no_exchange_warning(api, caplog):
    from nbgrader.apps.api import NbGraderAPI

    from torchsteps.nbgrader_plugins.exchange import NOT_USED

    with caplog.at_level(logging.WARNING):
        fresh = NbGraderAPI(coursedir=api.coursedir, config=api.config)
    # what the formgrader's Manage Assignments page passes to its template (exchange_missing -> the warning)
    assert fresh.exchange_missing is False and fresh.get_released_assignments() == set()
    assert not [r for r in caplog.records if "exchange" in r.getMessage().lower() or "Unwritable" in r.getMessage()]
    refused = fresh.release_assignment(ASSIGNMENT)
    assert refused["success"] is False and NOT_USED in refused["log"]
