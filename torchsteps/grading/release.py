"""The release step: nbgrader's ``generate_assignment``, then the students' self-check wheel beside the notebooks.

``release/<assignment>/`` is what students receive. Besides the notebooks and ``checks.py`` it holds
``torchsteps_selfcheck-<version>-py3-none-any.whl``, built from ``selfcheck/`` (its own small
distribution: pytest, nbclient, ipykernel) with ``course.json``: the exercises of the release notebooks
just generated (grade_ids, points, headings). Nothing of ``source/`` other than what the release shows
goes into it, and no module of this package. A student installs it with one line::

    pip install torchsteps_selfcheck-1.0.0-py3-none-any.whl

``generate_assignment --force`` empties ``release/<assignment>/``, so every release (``make release``,
``make grade``) puts the wheel back; it is built once per content (``.grading/selfcheck/``) and
byte-identical from one build to the next (``SOURCE_DATE_EPOCH``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from nbgrader.apps.api import NbGraderAPI

from ..constants import SELFCHECK_WHEEL_GLOB

__all__ = ["SELFCHECK_DIR", "selfcheck_sources", "build_selfcheck_wheel", "release"]

SELFCHECK_DIR = "selfcheck"
CACHE_DIR = ".grading/selfcheck"
_ZIP_EPOCH = "315532800"  # 1980-01-01, the earliest date a zip entry can hold
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist", "course.json")


def selfcheck_sources(root: str | os.PathLike) -> Path:
    """``selfcheck/`` of the course at ``root``, else the one beside this package (a course copied without it).

    Raises:
        FileNotFoundError: if neither exists.
    """
    for candidate in (Path(root) / SELFCHECK_DIR, Path(__file__).resolve().parents[2] / SELFCHECK_DIR):
        if (candidate / "pyproject.toml").is_file():
            return candidate
    raise FileNotFoundError(f"no {SELFCHECK_DIR}/pyproject.toml in {root} or beside the torchsteps package")


def _digest(folder: Path, course_json: str) -> str:
    h = hashlib.sha256(course_json.encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if not any(_IGNORE(str(path.parent), [part]) for part in rel.parts):
            h.update(str(rel).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def build_selfcheck_wheel(release_dir: Path, root: Path) -> Path | None:
    """Build the self-check wheel for the release notebooks in ``release_dir`` and put it there; its path,
    or None when no release notebook has a test cell (nothing to check).

    Raises:
        RuntimeError: if pip cannot build the wheel (its output is in the message).
    """
    from torchsteps_selfcheck.course import read_release

    sources = selfcheck_sources(root)
    try:
        course_json = read_release(release_dir).to_json()
    except ValueError:  # no test cell in any notebook
        return None
    cache = root / CACHE_DIR / _digest(sources, course_json)
    wheels = sorted(cache.glob("*.whl")) if cache.is_dir() else []
    if not wheels:
        with tempfile.TemporaryDirectory() as tmp:
            build = Path(tmp) / "selfcheck"
            shutil.copytree(sources, build, ignore=_IGNORE)
            (build / "src" / "torchsteps_selfcheck" / "course.json").write_text(course_json, encoding="utf-8")
            env = dict(os.environ, SOURCE_DATE_EPOCH=_ZIP_EPOCH, PIP_DISABLE_PIP_VERSION_CHECK="1")
            out = Path(tmp) / "wheel"
            done = subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), str(build)],
                capture_output=True, text=True, env=env, cwd=tmp,
            )
            built = sorted(out.glob("*.whl"))
            if done.returncode != 0 or len(built) != 1:
                raise RuntimeError(f"building the self-check wheel failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
            cache.mkdir(parents=True, exist_ok=True)
            shutil.copy(built[0], cache / built[0].name)
            wheels = [cache / built[0].name]
    for old in release_dir.glob(SELFCHECK_WHEEL_GLOB):
        old.unlink()
    return Path(shutil.copy(wheels[0], release_dir / wheels[0].name))


def release(api: NbGraderAPI, assignment_id: str) -> Path | None:
    """``nbgrader generate_assignment --force``, then the self-check wheel into the release; the wheel's path
    (None when the assignment has no test cell).

    Raises:
        RuntimeError: if nbgrader cannot generate the release, or the wheel cannot be built.
    """
    generated = api.generate_assignment(assignment_id, force=True)
    if not generated["success"]:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{generated.get('log', '')}{generated.get('error', '')}")
    root = Path(api.coursedir.root)
    release_dir = root / api.coursedir.release_directory / assignment_id
    return build_selfcheck_wheel(release_dir, root)
