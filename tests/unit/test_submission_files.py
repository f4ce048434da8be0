"""Which files of a submission are graded (torchsteps.grading.submission_files): links, special files and size caps.

Large files are sparse (``truncate``): they take no disk, and a regression that reads one reads zeros, a
few hundred MiB at most, never an endless stream.
"""

from __future__ import annotations

import hashlib
import json
import os
from types import SimpleNamespace

import nbformat
import pytest
from nbformat.v4 import new_notebook

from torchsteps.grading import submission_files
from torchsteps.grading.cluster import _regular_files
from torchsteps.grading.incremental import submission_digest
from torchsteps.grading.staging import UnreadableSubmission, gradable_files, stage_submission
from torchsteps.grading.submission_files import (
    FileTooLarge,
    SubmissionLimits,
    copy_file,
    file_digest,
    format_size,
    list_submission,
    read_file,
)

MIB = 1024 * 1024
EXPECTED = {"01_intro": frozenset()}


def _sparse(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(size)


def _notebook(folder, name="01_intro.ipynb"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(nbformat.writes(new_notebook()))


@pytest.fixture
def opened(monkeypatch):
    """The paths ``os.open`` was asked for (every read in the module goes through it)."""
    paths = []
    real_open = os.open

    def record(path, *args, **kwargs):
        paths.append(os.path.basename(os.fspath(path)))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", record)
    return paths


def test_a_file_over_the_cap_is_left_out_named_and_never_opened(tmp_path, opened):
    submitted = tmp_path / "in"
    _notebook(submitted)
    _sparse(submitted / "weights.pt", 8 * 1024**3)  # 8 GiB, sparse
    (submitted / "data.csv").write_text("a,b\n")
    notes = stage_submission(submitted, tmp_path / "out", EXPECTED)
    assert notes == ["left out, larger than 100 MiB: weights.pt (8.0 GiB)"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["01_intro.ipynb", "data.csv"]
    assert "weights.pt" not in opened


def test_a_notebook_over_the_cap_is_the_rows_reason_naming_the_setting(tmp_path):
    submitted = tmp_path / "in"
    _sparse(submitted / "01_intro.ipynb", 101 * MIB)
    with pytest.raises(UnreadableSubmission, match=r"01_intro.ipynb is 101.0 MiB: a notebook larger than 100 MiB "
                                                   r"\(c.SubmissionLimits.max_file_mb\) is not graded"):
        stage_submission(submitted, tmp_path / "out", EXPECTED)


def test_the_caps_are_read_from_the_course_config(tmp_path):
    from traitlets.config import Config

    config = Config()
    config.SubmissionLimits.max_file_mb = 1
    submitted = tmp_path / "in"
    _notebook(submitted)
    _sparse(submitted / "big.bin", 2 * MIB)
    notes = stage_submission(submitted, tmp_path / "out", EXPECTED, limits=SubmissionLimits(config=config))
    assert notes == ["left out, larger than 1 MiB: big.bin (2.0 MiB)"]


def test_past_the_total_or_the_file_count_the_rest_is_left_out_notebooks_first(tmp_path):
    submitted = tmp_path / "in"
    (submitted / "a").mkdir(parents=True)
    for name in ("a/1.bin", "a/2.bin", "z.bin"):
        _sparse(submitted / name, 400 * 1024)
    _notebook(submitted, "zz_last_by_name.ipynb")
    listing = list_submission(submitted, SubmissionLimits(max_submission_mb=1))
    # the notebook is taken first although its name sorts last; 3 x 400 KiB do not fit in 1 MiB
    assert [p for p, _ in listing.taken] == ["zz_last_by_name.ipynb", "a/1.bin", "a/2.bin"]
    assert listing.notes() == ["left out, past the 1 MiB or 1000 files a submission may hold: z.bin (400.0 KiB)"]
    listing = list_submission(submitted, SubmissionLimits(max_files=2))
    assert [p for p, _ in listing.taken] == ["zz_last_by_name.ipynb", "a/1.bin"]
    assert [p for p, _, _ in listing.left_out] == ["a/2.bin", "z.bin"]


def test_a_notebook_past_the_file_count_is_the_rows_reason(tmp_path):
    submitted = tmp_path / "in"
    _notebook(submitted, "01_intro.ipynb")
    _notebook(submitted, "02_more.ipynb")
    with pytest.raises(UnreadableSubmission, match=r"02_more.ipynb is .*past the 100 MiB or 1 files a submission may hold"):
        gradable_files(submitted, SubmissionLimits(max_submission_mb=100, max_files=1), expected=["01_intro", "02_more"])


def test_many_files_left_out_make_one_short_note(tmp_path):
    submitted = tmp_path / "in"
    submitted.mkdir()
    for i in range(25):
        os.symlink("/nonexistent", submitted / f"link{i:02}")
    (note,) = list_submission(submitted, SubmissionLimits()).notes()
    assert note.startswith("left out, not followed: link00 (a link), link01 (a link)")
    assert note.endswith("link09 (a link) and 15 more"), note


def test_links_and_fifos_share_one_note_in_path_order(tmp_path):
    submitted = tmp_path / "in"
    submitted.mkdir()
    os.mkfifo(submitted / "a_pipe")
    os.symlink("/nonexistent", submitted / "b_link")
    assert list_submission(submitted).notes() == ["left out, not followed: a_pipe (not a regular file), b_link (a link)"]


def test_editor_leftovers_are_skipped_and_empty_folders_kept(tmp_path):
    submitted = tmp_path / "in"
    _notebook(submitted)
    for leftover in (".ipynb_checkpoints/01_intro-checkpoint.ipynb", "__pycache__/helpers.cpython-311.pyc", "sub/__pycache__/x.pyc"):
        (submitted / leftover).parent.mkdir(parents=True, exist_ok=True)
        (submitted / leftover).write_text("x")
    (submitted / "empty").mkdir()
    stage_submission(submitted, tmp_path / "out", EXPECTED)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")) == [
        "01_intro.ipynb", "empty", "sub"]


def test_a_missing_or_linked_folder_lists_nothing(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "x").write_text("x")
    os.symlink(tmp_path / "real", tmp_path / "linked")
    assert list_submission(tmp_path / "linked").taken == []
    assert list_submission(tmp_path / "missing").taken == []


def test_reading_stops_at_the_cap_when_a_file_grew_after_listing(tmp_path):
    path = tmp_path / "grows.bin"
    _sparse(path, 2 * MIB)
    with pytest.raises(FileTooLarge, match="grows.bin grew past 1.0 MiB"):
        read_file(path, limit=MIB)
    with pytest.raises(FileTooLarge):
        copy_file(path, tmp_path / "copy.bin", limit=MIB)
    with pytest.raises(FileTooLarge):
        file_digest(path, limit=MIB)
    assert read_file(path) == bytes(2 * MIB)  # no limit: the instructor's own folders
    assert file_digest(path) == hashlib.sha256(bytes(2 * MIB)).digest()


def test_a_link_or_fifo_swapped_in_after_listing_is_never_followed_or_waited_on(tmp_path):
    (tmp_path / "secret.ipynb").write_text("solutions")
    os.symlink(tmp_path / "secret.ipynb", tmp_path / "link.ipynb")
    os.mkfifo(tmp_path / "pipe")
    for path in (tmp_path / "link.ipynb", tmp_path / "pipe"):
        with pytest.raises(OSError):
            read_file(path)


def test_the_digest_does_not_read_a_file_grading_leaves_out(tmp_path, opened):
    folder = tmp_path / "submitted" / "ada" / "a"
    _notebook(folder)
    _sparse(folder / "weights.pt", 8 * 1024**3)
    cd = SimpleNamespace(root=str(tmp_path), submitted_directory="submitted", source_directory="source")
    first = submission_digest(cd, "a", "ada")
    assert "weights.pt" not in opened and "01_intro.ipynb" in opened
    _sparse(folder / "weights.pt", 9 * 1024**3)
    assert submission_digest(cd, "a", "ada") != first  # its size is in the note on the row: a new grade
    assert submission_digest(cd, "a", "ada", SubmissionLimits(max_file_mb=10_000)) != first  # now graded: read


def test_the_dask_client_sends_what_staging_copies_with_the_same_notes(tmp_path):
    submitted = tmp_path / "in"
    _notebook(submitted)
    _sparse(submitted / "weights.pt", 200 * MIB)
    os.symlink("/nonexistent", submitted / "data.csv")
    limits = SubmissionLimits()
    listing = gradable_files(submitted, limits)
    files = _regular_files(submitted, listing)
    notes = stage_submission(submitted, tmp_path / "out", EXPECTED, limits=limits)
    assert set(files) == {p.name for p in (tmp_path / "out").iterdir()} == {"01_intro.ipynb"}
    assert listing.notes() == notes == ["left out, not followed: data.csv (a link)",
                                        "left out, larger than 100 MiB: weights.pt (200.0 MiB)"]
    assert json.loads(files["01_intro.ipynb"])["cells"] == []


def test_the_dask_client_names_a_file_it_cannot_read(tmp_path, monkeypatch):
    submitted = tmp_path / "in"
    _notebook(submitted)
    listing = gradable_files(submitted, SubmissionLimits())
    monkeypatch.setattr(submission_files, "_open_regular", lambda path: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(UnreadableSubmission, match="could not read 01_intro.ipynb from the submission: Permission denied"):
        _regular_files(submitted, listing)


@pytest.mark.parametrize("n, text", [(0, "0 bytes"), (1023, "1023 bytes"), (1024, "1.0 KiB"), (101 * MIB, "101.0 MiB"),
                                     (8 * 1024**3, "8.0 GiB"), (3 * 1024**5, "3072.0 TiB")])
def test_sizes_read_as_a_person_writes_them(n, text):
    assert format_size(n) == text


def test_padding_never_pushes_out_the_timestamp_or_an_expected_notebook(tmp_path):
    # Review: 999 small files before timestamp.txt pushed it past max_files, so no late penalty applied.
    submitted = tmp_path / "in"
    (submitted / "timestamp.txt").parent.mkdir(parents=True)
    (submitted / "timestamp.txt").write_text("2026-12-03 10:00:00.000000 UTC")
    _notebook(submitted, "zz.ipynb")
    for i in range(5):
        (submitted / f"a{i}.txt").write_text("pad")
    listing = gradable_files(submitted, SubmissionLimits(max_files=2), expected=["zz"])
    assert [p for p, _ in listing.taken] == ["timestamp.txt", "zz.ipynb"]
    notes = stage_submission(submitted, tmp_path / "out", {"zz": frozenset()}, limits=SubmissionLimits(max_files=2))
    assert (tmp_path / "out" / "timestamp.txt").is_file()
    assert notes == ["left out, past the 500 MiB or 2 files a submission may hold: a0.txt (3 bytes), a1.txt (3 bytes), "
                     "a2.txt (3 bytes), a3.txt (3 bytes), a4.txt (3 bytes)"]


def test_a_timestamp_over_the_cap_is_the_rows_reason(tmp_path):
    submitted = tmp_path / "in"
    _notebook(submitted)
    _sparse(submitted / "timestamp.txt", 2 * MIB)
    with pytest.raises(UnreadableSubmission, match="timestamp.txt is 2.0 MiB: the timestamp larger than 1 MiB"):
        gradable_files(submitted, SubmissionLimits(max_file_mb=1), expected=["01_intro"])


def test_an_extra_notebook_over_the_cap_is_a_note_but_an_expected_one_a_reason(tmp_path):
    # Review: any notebook over a cap failed the whole submission, though nbgrader ignores extra notebooks; and
    # (second review) one that might be a missing notebook renamed turned partial credit into an error row.
    submitted = tmp_path / "in"
    _notebook(submitted)
    _sparse(submitted / "scratch.ipynb", 2 * MIB)
    limits = SubmissionLimits(max_file_mb=1)
    notes = stage_submission(submitted, tmp_path / "out", EXPECTED, limits=limits)
    assert notes == ["left out, larger than 1 MiB: scratch.ipynb (2.0 MiB)"]
    notes = stage_submission(submitted, tmp_path / "out", {**EXPECTED, "02_more": frozenset()}, limits=limits)
    assert notes == ["left out, larger than 1 MiB: scratch.ipynb (2.0 MiB)"]  # 01_intro graded, 02_more scores 0
    assert [p.name for p in (tmp_path / "out").glob("*.ipynb")] == ["01_intro.ipynb"]
    _sparse(submitted / "01_intro.ipynb", 2 * MIB)
    with pytest.raises(UnreadableSubmission, match="01_intro.ipynb is 2.0 MiB"):
        stage_submission(submitted, tmp_path / "out", EXPECTED, limits=limits)


def test_a_copy_that_cannot_be_written_blames_the_grading_machine_not_the_student(tmp_path):
    # Review: an OSError while writing the copy (a legal path that grows too long under .grading/) escaped
    # staging and stopped the class; a full disk read "could not read" the student's file.
    segment = "d" * 200
    submitted = tmp_path / "in"
    deep = submitted.joinpath(*[segment] * ((4000 - len(str(submitted))) // 201))
    deep.mkdir(parents=True)
    (deep / "x.txt").write_text("x")
    _notebook(submitted)
    staged = tmp_path / ("s" * 250) / "out"
    with pytest.raises(UnreadableSubmission, match=r"could not write the copy of d+/.*x.txt on the grading machine: File name too long") as caught:
        stage_submission(submitted, staged, EXPECTED)
    assert caught.value.notes == []


def test_folders_nested_too_deeply_are_left_out_and_named(tmp_path):
    # Review: the walk recursed once per folder (RecursionError at ~1,000 levels, in the digest that runs for
    # every student first); it is a loop now, and stops at MAX_DEPTH, where the standard library's recursive
    # rmtree and makedirs (on the staged copy) are still safe.
    from torchsteps.grading.submission_files import MAX_DEPTH

    submitted = tmp_path / "in"
    _notebook(submitted)
    deep = submitted.joinpath(*["d"] * (MAX_DEPTH + 5))
    deep.mkdir(parents=True)
    (deep / "x.txt").write_text("x")
    (submitted.joinpath(*["d"] * MAX_DEPTH) / "kept.txt").write_text("x")
    listing = list_submission(submitted, SubmissionLimits())
    assert [p for p, _ in listing.taken] == ["01_intro.ipynb", "/".join(["d"] * MAX_DEPTH) + "/kept.txt"]
    assert listing.notes() == [f"left out, nested deeper than {MAX_DEPTH} folders: {'/'.join(['d'] * (MAX_DEPTH + 1))} (a folder)"]
    notes = stage_submission(submitted, tmp_path / "out", EXPECTED)
    assert notes == listing.notes()


def test_a_staged_copy_keeps_the_permission_bits_and_modification_time(tmp_path):
    submitted = tmp_path / "in"
    _notebook(submitted)
    (submitted / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(submitted / "run.sh", 0o755)
    (submitted / "ro.txt").write_text("x")
    os.chmod(submitted / "ro.txt", 0o444)
    os.utime(submitted / "run.sh", (1_600_000_000, 1_600_000_000))
    stage_submission(submitted, tmp_path / "out", EXPECTED)
    out = tmp_path / "out"
    assert os.stat(out / "run.sh").st_mode & 0o777 == 0o755 and os.stat(out / "run.sh").st_mtime == 1_600_000_000
    assert os.stat(out / "ro.txt").st_mode & 0o777 == 0o644  # owner may write: staging rewrites what it copies


def test_notes_made_before_a_reason_stay_with_it(tmp_path):
    submitted = tmp_path / "in"
    submitted.mkdir()
    (submitted / "01_intro.ipynb").write_text("{ not json")
    os.symlink("/nonexistent", submitted / "data.csv")
    with pytest.raises(UnreadableSubmission, match="not valid notebook JSON") as caught:
        stage_submission(submitted, tmp_path / "out", EXPECTED)
    assert caught.value.notes == ["left out, not followed: data.csv (a link)"]


def test_the_digest_sees_a_new_timestamp_behind_padding(tmp_path):
    # Review: staging took timestamp.txt first, the digest did not (it counted it by name and size only past
    # the caps), so a re-collected late attempt with the same notebooks kept its old grade and penalty.
    folder = tmp_path / "submitted" / "ada" / "a"
    _notebook(folder, "n.ipynb")
    for i in range(5):
        (folder / f"a{i}.txt").write_text("pad")
    (folder / "timestamp.txt").write_text("2026-03-01 10:00:00.000000")
    cd = SimpleNamespace(root=str(tmp_path), submitted_directory="submitted", source_directory="source")
    limits = SubmissionLimits(max_files=2)
    first = submission_digest(cd, "a", "ada", limits, expected=["n"])
    (folder / "timestamp.txt").write_text("2026-03-09 23:00:00.000000")  # same size
    assert submission_digest(cd, "a", "ada", limits, expected=["n"]) != first


def test_a_folder_of_very_many_files_is_not_listed_whole(tmp_path, monkeypatch):
    # Review: every entry was listed before max_files applied; a million files cost the memory and time of all.
    submitted = tmp_path / "in"
    _notebook(submitted)
    (submitted / "data").mkdir()
    for i in range(30):
        (submitted / "data" / f"{i:02}.png").write_bytes(b"x")
    limits = SubmissionLimits(max_files=2)  # 20 entries looked at, at most
    listed = []
    real_scandir = os.scandir

    class Counting:
        def __init__(self, path):
            self.inner = real_scandir(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.inner.close()

        def __iter__(self):
            for entry in self.inner:
                listed.append(entry.name)
                yield entry

    monkeypatch.setattr(os, "scandir", Counting)
    listing = list_submission(submitted, limits, first=("01_intro.ipynb",))
    assert len(listed) <= 21  # the bound, plus the entry that showed it was reached
    assert listing.truncated and [p for p, _ in listing.taken][0] == "01_intro.ipynb" and len(listing.taken) == 2
    assert listing.notes()[0] == "left out, not looked at: everything past the first 20 files and folders of the submission"


def test_the_timestamp_and_notebooks_are_found_even_past_the_walks_bound(tmp_path):
    # Review: 10 x max_files padding files at the top could hide timestamp.txt (no late penalty) and a notebook.
    submitted = tmp_path / "in"
    _notebook(submitted, "lab.ipynb")
    (submitted / "timestamp.txt").write_text("2026-03-09 23:00:00")
    for i in range(300):
        (submitted / f"pad{i:04}").write_bytes(b"")
    listing = gradable_files(submitted, SubmissionLimits(max_files=10), expected=["lab"])
    assert listing.truncated
    assert [p for p, _ in listing.taken][:2] == ["timestamp.txt", "lab.ipynb"]
