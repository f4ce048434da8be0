"""File names that are not UTF-8 reach a row's notes printable (torchsteps.results.status.printable)."""

from __future__ import annotations

import os

from torchsteps.grading.staging import stage_submission
from torchsteps.results.status import Status, SubmissionResult, printable, read_status, write_status


def test_bytes_that_are_not_utf8_are_written_as_escapes():
    assert printable(os.fsdecode(b"zz\xff.txt")) == "zz\\xff.txt"
    assert printable("cell \ud800 from JSON") == "cell \\ud800 from JSON"
    assert printable("zoë.ipynb") == "zoë.ipynb"


def test_a_note_naming_such_a_file_can_be_written_anywhere(tmp_path):
    # Review: 1,000 files and one named b"zz\xff.txt" put a lone surrogate in the row's note; write_status kept
    # it, and writing grades.csv raised UnicodeEncodeError after every later run.
    submitted = tmp_path / "in"
    submitted.mkdir()
    (submitted / "01_intro.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    os.symlink("/nonexistent", os.path.join(os.fsencode(submitted), b"zz\xff.csv"))
    notes = stage_submission(submitted, tmp_path / "out", {"01_intro": frozenset()})
    result = SubmissionResult("ada", "a", Status.GRADED, notes=notes).make_printable()
    assert result.notes == ["left out, not followed: zz\\xff.csv (a link)"]
    "; ".join(result.notes).encode("utf-8")  # strict: what grades.csv and the terminal need


def test_an_older_status_file_with_surrogates_is_read_printable(tmp_path):
    raw = SubmissionResult("ada", "a", Status.ERROR, reason=os.fsdecode(b"x\xfe.ipynb is an empty file"),
                           notes=[os.fsdecode(b"n\xff")], flags=[os.fsdecode(b"f\xfd")])
    write_status(tmp_path, [raw])  # as an older version wrote it (JSON escapes the surrogates)
    (back,) = read_status(tmp_path)
    assert (back.reason, back.notes, back.flags) == ("x\\xfe.ipynb is an empty file", ["n\\xff"], ["f\\xfd"])


def test_a_folder_name_that_is_not_utf8_gets_a_row_id_no_folder_can_have():
    # Review: printable() mapped b"zz\xff" and a folder literally named "zz\xff" to one id: one row for two.
    from torchsteps.grading.driver import row_id

    assert row_id(os.fsdecode(b"zz\xff")) == "submitted/zz\\xff"
    assert row_id("zz\\xff") == "zz\\xff" and row_id("zoë") == "zoë"


def test_two_folder_names_that_are_not_utf8_never_share_a_row():
    # Review: b"\\\\xff\\xfe" and b"\\xff\\\\xfe" both read "submitted/\\xff\\xfe".
    from torchsteps.grading.driver import row_id

    a, b = os.fsdecode(b"\\xff\xfe"), os.fsdecode(b"\xff\\xfe")
    assert row_id(a) != row_id(b)
