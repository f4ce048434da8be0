"""Submissions from an LMS bulk download: nbgrader's ``zip_collect``, run before grading.

The instructor drops the LMS's bulk-download archive (``.zip``) into
``downloaded/<assignment>/archive/``; :func:`collect_lms_downloads` runs nbgrader's own
``ZipCollectApp`` (the code behind ``nbgrader zip_collect <assignment> --force``) in-process with the
course's config: the archives are extracted into ``downloaded/<assignment>/extracted/`` and each
notebook whose name matches ``c.FileNameCollectorPlugin.named_regexp`` is copied to
``submitted/<student>/<assignment>/<notebook>.ipynb`` (plus nbgrader's ``timestamp.txt``, the time of
the attempt). Grading then reads ``submitted/`` as usual.

File names follow Blackboard's bulk download (the convention of nbgrader's documentation)::

    <LMS assignment name>_<student id>_attempt_<YYYY-MM-DD-HH-MM-SS>_<original file name>
    pytorch_basics_jo.mensah_attempt_2024-03-01-14-05-09_02_creating_tensors (1).ipynb
      -> student "jo.mensah", notebook "02_creating_tensors.ipynb", attempt 2024-03-01 14:05:09

Two plugins make nbgrader's zip_collect fit real downloads (both are used unless
``nbgrader_config.py`` names other ones):

- :class:`LmsFileNameCollectorPlugin` reads the attempt time with ``timestamp_format`` (nbgrader's
  own plugin hands ``2024-03-01-14-05-09`` to dateutil, which reads ``-14-05-09`` as a time zone:
  wrong times, and ``...-23-59-59`` stops the whole collect), keeps the whole notebook name
  (nbgrader drops what follows the last dot of a name like ``v1.2_lab``), ignores macOS metadata
  (``__MACOSX/``, ``._*``), and says why each file it skips was skipped;
- :class:`LmsExtractorPlugin` extracts each archive on its own: an unreadable archive is reported and
  the others are still collected (nbgrader's extractor stops at the first bad archive). Only archives
  directly in ``archive/`` and not named like an attempt are unpacked: an archive inside the download, in a
  folder of ``archive/`` (a download the browser unzipped) or named ``..._attempt_<time>_...`` is a
  student's upload, whose files could be named to claim another attempt time or another student's id.
  The collector names it as skipped.

The behaviour is ``--force``'s: ``extracted/`` and the folder of every collected student are replaced,
so collecting again gives the same ``submitted/``; the download replaces a student's whole
``submitted/<student>/<assignment>`` folder, and students who are not in the download are left alone.
Files in ``archive/`` are only read, never changed, moved or deleted.
"""

from __future__ import annotations

import copy
import datetime
import logging
import os
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

from nbgrader.apps.api import NbGraderAPI
from nbgrader.apps.zipcollectapp import ZipCollectApp
from nbgrader.coursedir import CourseDirectory
from nbgrader.plugins import ExtractorPlugin, FileNameCollectorPlugin
from nbgrader.utils import find_all_notebooks, unzip
from traitlets import Dict, Unicode

__all__ = ["NAMED_REGEXP", "TIMESTAMP_FORMAT", "LmsFileNameCollectorPlugin", "LmsExtractorPlugin", "collect_lms_downloads"]

# Blackboard-style names: <LMS assignment>_<student id>_attempt_<YYYY-MM-DD-HH-MM-SS>_<original name>.ipynb.
# nbgrader matches it (re.match) against the extracted file's full path, hence the leading folders.
# Student ids: a letter or digit, then letters, digits, '.' and '-' (ada, s1234567, jo.mensah); no '_',
# which separates the fields (the LMS assignment name before it may hold '_' and spaces). The original
# name loses the " (1)" a browser adds to a second download of the same file.
NAMED_REGEXP = (
    r"^(?:.*/)?"
    r"(?P<lms_assignment>[^/._][^/]*?)"
    r"_(?P<student_id>[A-Za-z0-9][A-Za-z0-9.\-]*)"
    r"_attempt_(?P<timestamp>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})"
    r"_(?P<file_id>[^/]+?)(?: \(\d+\))?\.ipynb$"
)
TIMESTAMP_FORMAT = "%Y-%m-%d-%H-%M-%S"
_ARCHIVE_EXTENSIONS = frozenset({".zip", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".7z", ".rar"})
# The part of an LMS file name that says it is one student's attempt (Blackboard: <assignment>_<student>_attempt_<time>_<file>),
# whatever the course's collector pattern.
_ATTEMPT_NAME = re.compile(r"_attempt_\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}_")

class LmsFileNameCollectorPlugin(FileNameCollectorPlugin):
    """nbgrader's file-name collector, for LMS downloads (see the module docstring).

    ``named_regexp`` (config ``c.FileNameCollectorPlugin.named_regexp``) defaults to
    :data:`NAMED_REGEXP`; ``timestamp_format`` is the ``strptime`` format of its ``timestamp`` group
    (naive: the LMS's local time, which is what nbgrader's ``timestamp.txt`` then holds).
    ``skipped`` maps each file this plugin skipped to the reason.
    """

    named_regexp = Unicode(NAMED_REGEXP, help=FileNameCollectorPlugin.named_regexp.help).tag(config=True)
    timestamp_format = Unicode(
        TIMESTAMP_FORMAT, help="strptime format of the regexp's `timestamp` group; empty: let nbgrader parse it"
    ).tag(config=True)
    skipped = Dict()

    def _skip(self, path: str, reason: str) -> None:
        self.skipped[path] = reason
        self.log.warning("Skipped %s: %s", path, reason)

    def collect(self, submitted_file: str) -> dict | None:
        parts = Path(submitted_file).parts
        ext = os.path.splitext(submitted_file)[1]
        if "__MACOSX" in parts or parts[-1].startswith("._"):
            self._skip(submitted_file, "macOS metadata, not a submission")
            return None
        if ext in _ARCHIVE_EXTENSIONS:
            self._skip(submitted_file, "an archive inside the download (a student's upload): not unpacked, since the "
                                       "names of its files could claim another attempt time or another student; "
                                       "only the LMS's own download files directly in archive/ are unpacked")
            return None
        if ext not in self.valid_ext:
            self._skip(submitted_file, f"not a notebook ({', '.join(self.valid_ext)})")
            return None
        if not self.named_regexp:
            self._skip(submitted_file, "no file-name pattern configured (c.FileNameCollectorPlugin.named_regexp)")
            return None
        match = re.match(self.named_regexp, submitted_file)
        info = match.groupdict() if match else {}
        if not info.get("student_id") or not info.get("file_id"):
            self._skip(
                submitted_file,
                "the name does not follow the LMS pattern <assignment>_<student>_attempt_<YYYY-MM-DD-HH-MM-SS>_<notebook>.ipynb "
                "(c.FileNameCollectorPlugin.named_regexp)",
            )
            return None
        if info.get("timestamp") and self.timestamp_format:
            try:
                info["timestamp"] = datetime.datetime.strptime(info["timestamp"], self.timestamp_format)
            except ValueError:
                self._skip(submitted_file, f"attempt time {info['timestamp']!r} is not a valid date ({self.timestamp_format})")
                return None
        if not info["file_id"].endswith(ext):
            info["file_id"] += ext  # ZipCollectApp drops the name's last '.suffix', then adds the extension
        return info


def _archive_problem(path: str) -> str | None:
    """Why the archive at ``path`` cannot be extracted, or None; reads it completely, changes nothing."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            return f"damaged member {bad!r} (CRC check failed)" if bad else None
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as t:
                for member in t:
                    if member.isfile():
                        data = t.extractfile(member)
                        while data.read(1 << 20):  # in chunks: a member may be larger than memory
                            pass
            return None
        return "not a zip or tar archive (the download may be incomplete or damaged)"
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as e:
        return f"{type(e).__name__}: {e}"


class LmsExtractorPlugin(ExtractorPlugin):
    """nbgrader's extractor, one archive at a time: an unreadable archive is recorded in
    ``unreadable`` (path -> reason) and logged as an error, and the other archives are still extracted.
    Files that are not archives are copied, as nbgrader does. Nothing in ``archive/`` is changed."""

    unreadable = Dict()

    def _named_like_an_attempt(self, root: str, stem: str) -> bool:
        """Whether an archive named ``stem`` + extension is named as the collector names one student's attempt
        (``c.FileNameCollectorPlugin.named_regexp``, the course's LMS pattern, with ``.ipynb`` for its extension)."""
        stem = stem[:-4] if stem.endswith(".tar") else stem
        config = self.config
        pattern = (config.LmsFileNameCollectorPlugin.get("named_regexp") or config.FileNameCollectorPlugin.get("named_regexp")
                   or NAMED_REGEXP)
        match = re.match(pattern, os.path.join(root, stem + ".ipynb"))
        return bool(_ATTEMPT_NAME.search(stem + "_") or (match and match.groupdict().get("student_id")))

    def extract(self, archive_path: str, extracted_path: str) -> None:
        if not os.listdir(archive_path):
            self.log.warning("No files found in directory: %s", archive_path)
            return
        for root, dirs, files in os.walk(archive_path):
            dirs.sort()
            if not files:
                continue
            extract_to = os.path.normpath(os.path.join(extracted_path, os.path.relpath(root, archive_path)))
            os.makedirs(extract_to, exist_ok=True)
            for name in sorted(files):
                src = os.path.join(root, name)
                stem, ext = os.path.splitext(name)
                # Only the LMS's own downloads, at the top of archive/, are unpacked. An archive in a folder (a
                # download unzipped by the browser) or named like an attempt is a student's upload: its files,
                # named like the LMS's, could claim another attempt time or another student's id. It is copied,
                # and the collector skips it with the reason.
                if ext not in self.zip_ext or root != archive_path or self._named_like_an_attempt(root, stem):
                    shutil.copy(src, os.path.join(extract_to, name))
                    continue
                problem = _archive_problem(src)
                if problem is None:
                    own = os.path.join(extract_to, stem[:-4] if stem.endswith(".tar") else stem)
                    existed = os.path.isdir(own)
                    try:
                        self.log.info("Extracting from: %s", src)
                        # tree=False: nbgrader's extractor unpacks archives inside archives (students' uploads)
                        unzip(src, extract_to, zip_ext=self.zip_ext, create_own_folder=True, tree=False)
                    except Exception as e:  # noqa: BLE001 (any failure of one archive must not stop the others)
                        problem = f"{type(e).__name__}: {e}"
                        if not existed:
                            shutil.rmtree(own, ignore_errors=True)
                if problem:
                    self.unreadable[src] = problem
                    self.log.error("Cannot extract %s: %s", src, problem)


# The ZipCollectApp traits set for a collection when the config leaves them out (nbgrader_config.py sets the same).
_PLUGINS = {"collector_plugin": LmsFileNameCollectorPlugin, "extractor_plugin": LmsExtractorPlugin}


class _ZipCollect(ZipCollectApp):
    """ZipCollectApp that keeps its plugins and what it collected, for the notes."""

    plugins: tuple = (None, None)  # (extractor, collector), once made
    source_files: list[str] = []
    collected: dict | None = None

    def init_plugins(self):
        super().init_plugins()
        self.plugins = (self.extractor_plugin_inst, self.collector_plugin_inst)

    def _collect_files(self, src_files):
        self.source_files = list(src_files)
        self.collected = super()._collect_files(src_files)
        return self.collected


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def collect_lms_downloads(api: NbGraderAPI, assignment_id: str) -> list[str]:
    """Collect the LMS downloads in ``downloaded/<assignment_id>/archive/`` into ``submitted/``.

    Does nothing (returns ``[]``) when that folder is missing or holds no file. Otherwise runs
    nbgrader's ``ZipCollectApp`` with the course's config and ``--force``, and returns one note per
    line for the instructor: the notebooks collected for each student, every file skipped and why,
    every archive that could not be read. Never raises for a bad download.
    """
    config = copy.deepcopy(api.config)
    for trait, default in _PLUGINS.items():
        if trait not in config.ZipCollectApp:
            config.ZipCollectApp[trait] = default
    config.ZipCollectApp.force = True
    config.ExtractorPlugin.force = True

    log = logging.Logger(f"torchsteps.nbgrader_plugins.collect.{assignment_id}")
    handler = _ListHandler()
    log.addHandler(handler)

    def new_app(cfg) -> _ZipCollect:
        app = _ZipCollect(config=cfg, log=log)
        app.coursedir = CourseDirectory(parent=app, root=api.coursedir.root)
        app.coursedir.assignment_id = assignment_id
        return app

    # Where the downloads are, from a copy without the plugin settings: a plugin that cannot be
    # imported must not matter to a course that has no download.
    paths_only = copy.deepcopy(config)
    for trait in _PLUGINS:
        paths_only.ZipCollectApp.pop(trait, None)
    try:
        probe = new_app(paths_only)
    except Exception as e:  # noqa: BLE001
        return [f"LMS download: the zip_collect settings of nbgrader_config.py are invalid, nothing collected: {e}"]
    archive = Path(probe._format_collect_path(probe.archive_directory))
    extracted = Path(probe._format_collect_path(probe.extracted_directory))
    if not _has_files(archive):
        return []
    try:
        app = new_app(config)
    except Exception as e:  # noqa: BLE001
        return [f"LMS download: cannot run nbgrader zip_collect with the settings of nbgrader_config.py, nothing collected: {e}"]
    root = Path(app.coursedir.root)

    def shown(path: str) -> str:
        for base in (extracted, archive):
            try:
                return str(Path(path).relative_to(base))
            except ValueError:
                continue
        return path

    notes: list[str] = []
    failure = ""
    try:
        app.init_plugins()
        app.extract_archive_files()
        app.process_extracted_files()
    except SystemExit:  # ZipCollectApp.fail(): the message was logged as an error
        errors = [r.getMessage() for r in handler.records if r.levelno >= logging.ERROR]
        failure = errors[-1] if errors else "zip_collect stopped without a message"
    except Exception as e:  # noqa: BLE001 (a bad download must not stop grading)
        failure = f"{type(e).__name__}: {e}"

    extractor, collector = app.plugins
    for path, reason in sorted(getattr(extractor, "unreadable", {}).items()):
        notes.append(f"LMS download: cannot read {Path(path).relative_to(root)}: {reason}; nothing collected from it")
    collected = app.collected or {}
    kept = set()
    for student, data in sorted(collected.items()):
        kept.update(data["src_files"])
        when = f" (attempt of {data['timestamp']:%Y-%m-%d %H:%M:%S})" if isinstance(data["timestamp"], datetime.datetime) else ""
        folder = Path(app.coursedir.submitted_directory) / student / assignment_id
        notes.append(f"LMS download: {student}: collected {', '.join(sorted(data['file_ids']))} into {folder}/{when}")
    released = set(find_all_notebooks(app.coursedir.format_path(app.coursedir.release_directory, ".", assignment_id)))
    for student, data in sorted(collected.items()):
        for file_id in data["file_ids"]:
            if released and file_id not in released:
                notes.append(f"LMS download: {student}: '{file_id}' is not a notebook of {assignment_id}; collected under that name")
    skipped = dict(getattr(collector, "skipped", {}))
    ours = isinstance(collector, LmsFileNameCollectorPlugin)
    if app.collected is not None:
        for path in app.source_files:
            if path in kept:
                continue
            if path in skipped:
                why = skipped[path]
            elif ours:
                why = "an older attempt of a notebook collected from a newer attempt"
            else:
                why = "its name does not match c.FileNameCollectorPlugin.named_regexp, or an older attempt"
            notes.append(f"LMS download: skipped '{shown(path)}': {why}")
    if failure:
        notes.append(f"LMS download: zip_collect failed, nothing more was collected: {failure}")
    elif not collected:
        notes.append(f"LMS download: no submission found in {archive.relative_to(root)}")
    return notes
