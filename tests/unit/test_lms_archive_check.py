"""The check of an LMS download before extraction (torchsteps.nbgrader_plugins.collect._archive_problem)."""

from __future__ import annotations

import io
import tarfile
import tracemalloc

from torchsteps.nbgrader_plugins.collect import _archive_problem

MIB = 1024 * 1024


def _tar(path, member_size):
    zeros = path.parent / "zeros.bin"
    with zeros.open("wb") as f:
        f.truncate(member_size)  # sparse: no disk
    with tarfile.open(path, "w:gz", compresslevel=1) as t, zeros.open("rb") as data:
        t.addfile(tarfile.TarInfo("student_attempt_2026-12-03-10-00-00_01_intro.ipynb"), io.BytesIO(b""))
        info = tarfile.TarInfo("student_attempt_2026-12-03-10-00-00_weights.pt")
        info.size = member_size
        t.addfile(info, data)
    zeros.unlink()


def test_a_large_tar_member_is_checked_in_chunks_not_read_whole(tmp_path):
    # A member was read whole into memory (t.extractfile(member).read()): a 10 GiB file in a download, 10 GiB.
    archive = tmp_path / "download.tar.gz"
    _tar(archive, 96 * MIB)
    tracemalloc.start()
    try:
        assert _archive_problem(str(archive)) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MIB, f"peak {peak / MIB:.0f} MiB while checking a 96 MiB member"


def test_a_truncated_tar_is_a_problem_named(tmp_path):
    archive = tmp_path / "download.tar.gz"
    _tar(archive, 4 * MIB)
    archive.write_bytes(archive.read_bytes()[:-200])
    assert _archive_problem(str(archive))


def test_an_archive_named_by_the_courses_own_pattern_is_a_students_upload():
    # Review: the guard knew only Blackboard's "_attempt_<time>_"; with another LMS's pattern a student's zip at
    # the top of archive/ was unpacked, and its files could be named to claim another student.
    from traitlets.config import Config

    from torchsteps.nbgrader_plugins.collect import LmsExtractorPlugin

    config = Config()
    config.FileNameCollectorPlugin.named_regexp = r"^(?:.*/)?(?P<student_id>[a-z]+)__(?P<file_id>[^/]+)\.ipynb$"
    plugin = LmsExtractorPlugin(config=config)
    assert plugin._named_like_an_attempt("/c/downloaded/a/archive", "jo__work")
    assert not plugin._named_like_an_attempt("/c/downloaded/a/archive", "moodle-download")
    assert LmsExtractorPlugin()._named_like_an_attempt("/c/archive", "pytorch_basics_jo_attempt_2026-03-09-10-00-00_work")
    assert not LmsExtractorPlugin()._named_like_an_attempt("/c/archive", "gradebook_pytorch_basics")
