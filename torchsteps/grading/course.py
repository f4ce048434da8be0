"""Open an nbgrader course directory from Python: its config, its API, its roster.

Everything here goes through nbgrader's own classes (``CourseDirectory``, ``NbGraderAPI``,
``Gradebook``), so what ``make grade`` does is what the ``nbgrader`` commands do.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from nbgrader.api import Gradebook
from nbgrader.apps.api import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from nbgrader.utils import parse_utc
from traitlets import Dict, List, Unicode
from traitlets.config import Config, Configurable
from traitlets.config.loader import PyFileConfigLoader

__all__ = ["Roster", "RosterError", "load_config", "open_api", "register_roster", "import_students", "read_student_file",
           "default_assignment", "course_assignments"]

CONFIG_FILE = "nbgrader_config.py"


class Roster(Configurable):
    """The assignments of the course, and the CSV file its students are imported from.

    The gradebook is the roster, as in nbgrader: whoever is a student there (imported from
    ``student_file``, added with ``nbgrader db student add|import`` or in the formgrader) is graded.
    nbgrader 0.9 no longer reads assignments from its config (``db_assignments`` was removed), so this
    class holds them and :func:`register_roster` writes them to the gradebook through nbgrader's API.
    """

    assignments = List(
        Dict(), help="[{'name': ..., 'duedate': '2026-03-15 17:00:00 UTC'}, ...]; the due date (parsed by "
        "nbgrader.utils.parse_utc, UTC when no zone is given) is what late penalties count from",
    ).tag(config=True)
    student_file = Unicode(
        "students.csv",
        help="CSV roster in the course folder (columns id, first_name, last_name, email, lms_user_id), imported into "
             "the gradebook before grading with nbgrader's `db student import`; '' to keep students only in the gradebook",
    ).tag(config=True)


class RosterError(RuntimeError):
    """The roster file cannot be imported (missing ``id`` column, unreadable file)."""


def default_assignment(config: Config) -> str:
    """The assignment to grade when none is named: the only one in ``c.Roster.assignments``.

    Raises:
        ValueError: if the config lists no assignment, or several (then one must be named).
    """
    names = [a["name"] for a in Roster(config=config).assignments]
    if len(names) != 1:
        raise ValueError(f"the course has {len(names)} assignments ({', '.join(names) or 'none'}): name one with --assignment")
    return names[0]


def course_assignments(api: NbGraderAPI) -> list[str]:
    """The assignments ``grade`` grades when none is named: those of ``c.Roster.assignments``, in order,
    or, when it lists none, every folder of ``source/`` holding a notebook (sorted)."""
    names = [a["name"] for a in Roster(config=api.config).assignments]
    if names:
        return names
    source = Path(api.coursedir.root) / api.coursedir.source_directory
    if not source.is_dir():
        return []
    return sorted(p.name for p in source.iterdir() if p.is_dir() and not p.name.startswith(".") and any(p.glob("*.ipynb")))


def load_config(root: str | os.PathLike) -> Config:
    """The config of the course at ``root``, read from its ``nbgrader_config.py``.

    Raises:
        FileNotFoundError: if ``root`` has no ``nbgrader_config.py``.
    """
    _put_environment_scripts_on_path()
    root = Path(root).resolve()
    if not (root / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{root} is not a course directory: no {CONFIG_FILE}")
    config = PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()
    # The config sets its own folder as root; a copy of the course elsewhere must use that copy.
    config.CourseDirectory.root = str(root)
    return config


def _put_environment_scripts_on_path() -> None:
    """Make this environment's console scripts findable by name.

    nbgrader creates a new gradebook by running the ``alembic`` command through ``subprocess``
    (``nbgrader.dbutil``), found on ``PATH``; when the course is graded with ``.venv/bin/python``
    without activating the environment, that fails with ``FileNotFoundError: 'alembic'``.
    """
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")


def open_api(root: str | os.PathLike, config: Config | None = None) -> NbGraderAPI:
    """nbgrader's Python API for the course at ``root`` (the same calls the formgrader makes)."""
    _put_environment_scripts_on_path()
    config = config if config is not None else load_config(root)
    coursedir = CourseDirectory(config=config)
    return NbGraderAPI(coursedir=coursedir, config=config)


def read_student_file(root: str | os.PathLike, config: Config | None = None) -> list[dict]:
    """The rows of the course's roster CSV (``Roster.student_file``), or ``[]`` when it has none."""
    import csv

    config = config if config is not None else load_config(root)
    name = Roster(config=config).student_file
    path = Path(root) / name if name else None
    if path is None or not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def import_students(api: NbGraderAPI, path: str | os.PathLike) -> None:
    """Import a CSV roster into the gradebook with nbgrader's own ``nbgrader db student import`` (in process).

    Raises:
        RosterError: when nbgrader refuses the file (no ``id`` column, no such file); the message says why.
    """
    import io
    import logging

    from nbgrader.apps.dbapp import DbStudentImportApp

    app = DbStudentImportApp(config=api.config)
    app.log_level = logging.WARNING  # one line per student otherwise; make grade prints a summary
    app.coursedir = api.coursedir
    app.extra_args = [str(path)]
    messages = io.StringIO()
    handler = logging.StreamHandler(messages)
    handler.setLevel(logging.ERROR)
    app.log.addHandler(handler)
    try:
        app.start()
    except SystemExit:  # nbgrader's apps report a bad file with log.error + sys.exit(1)
        raise RosterError(f"nbgrader db student import {path}: {messages.getvalue().strip() or 'failed'}") from None
    finally:
        app.log.removeHandler(handler)


def creates_students(api: NbGraderAPI) -> bool:
    """nbgrader's ``Autograde.create_student`` (default True): may autograde add unknown students?"""
    return bool(api.config.Autograde.get("create_student", True))


def roster_refusal(api: NbGraderAPI, student_id: str, known_students) -> str | None:
    """Why ``student_id`` is not graded (with ``c.Autograde.create_student = False``, as stock autograde refuses
    a student not in the gradebook), or None. Checked before any file of the submission is read, locally and
    on a Dask client alike, so that both give the same reason."""
    if creates_students(api) or student_id in known_students:
        return None
    return (f"student '{student_id}' is not on the roster (not a student in the gradebook): add them to students.csv, "
            "or with `nbgrader db student add|import`, or in the formgrader")


def register_roster(api: NbGraderAPI) -> set[str]:
    """Register the assignments and import the roster CSV into the gradebook; the gradebook's student ids.

    Raises:
        RosterError: if the roster file is named but cannot be imported.
    """
    roster = Roster(config=api.config)
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        for assignment in roster.assignments:
            fields = {k: v for k, v in assignment.items() if k != "name"}
            if isinstance(fields.get("duedate"), str):
                fields["duedate"] = parse_utc(fields["duedate"])
            gb.update_or_create_assignment(assignment["name"], **fields)
    if roster.student_file:
        path = Path(api.coursedir.root) / roster.student_file
        if path.is_file():
            import_students(api, path)
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        return {s.id for s in gb.students}
