"""nbgrader configuration of the course "First steps with PyTorch".

Used by every nbgrader command run from this folder (``nbgrader generate_assignment``,
``nbgrader autograde``, the formgrader) and by ``make grade`` (``python -m torchsteps grade``).
"""

import os

from torchsteps.nbgrader_plugins.collect import NAMED_REGEXP, TIMESTAMP_FORMAT, LmsExtractorPlugin, LmsFileNameCollectorPlugin
from torchsteps.nbgrader_plugins.exchange import (
    NoCollect,
    NoExchangeList,
    NoFetchAssignment,
    NoFetchFeedback,
    NoReleaseAssignment,
    NoReleaseFeedback,
    NoSubmit,
)
from torchsteps.nbgrader_plugins.hardening import harden

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)
# The sandbox, the fixed preprocessors, feedback without hidden tests, the per-exercise export
# (torchsteps/nbgrader_plugins/hardening.py); the course's own settings follow.
harden(c)
# Trusted verdicts (README "Trusted verdicts"): test cells run in a separate sandboxed grader process,
# never in the student's kernel; TrustedExecute is GuardedExecute with that step, so c.GuardedExecute.*
# applies to it too. (Partial credit from a displayed value is off for test cells; this course has none.)
from torchsteps.nbgrader_plugins.execute import GuardedExecute  # noqa: E402
from torchsteps.nbgrader_plugins.trusted_execute import TrustedExecute  # noqa: E402

c.Autograde.autograde_preprocessors = [
    TrustedExecute if step is GuardedExecute else step for step in c.Autograde.autograde_preprocessors
]

# --- Course directory ---------------------------------------------------------------------------
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "pytorch-first-steps"
# SQLite by default; any SQLAlchemy URL works (postgresql://user@host/db) for a gradebook shared by
# several machines. `timeout`: with parallel grading, wait up to 60 s for SQLite's write lock.
c.CourseDirectory.db_url = os.environ.get(
    "TORCHSTEPS_DB_URL", "sqlite:///" + os.path.join(c.CourseDirectory.root, "gradebook.db") + "?timeout=60"
)
# SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the driver installed (requirements.lock) is psycopg2.
if c.CourseDirectory.db_url.startswith(("postgresql://", "postgres://")):
    c.CourseDirectory.db_url = "postgresql+psycopg2://" + c.CourseDirectory.db_url.split("://", 1)[1]

# --- Roster ---------------------------------------------------------------------------------------
# The gradebook is the roster, as in nbgrader. Students come from students.csv (columns id, first_name,
# last_name, email), imported by `make grade` with nbgrader's own `nbgrader db student import
# students.csv`; students added with `nbgrader db student add|import` or in the formgrader are graded
# too. Assignments are registered in the gradebook by `make grade`.
c.Roster.assignments = [{"name": "pytorch_basics"}]
c.Roster.student_file = "students.csv"
# A submission from someone who is not in the gradebook is reported, not silently added.
c.Autograde.create_student = False

# --- Submissions from an LMS bulk download (nbgrader zip_collect; `make grade` runs it first) -------
# Put the LMS's download (.zip) in downloaded/pytorch_basics/archive/. File names inside follow
# Blackboard: <LMS assignment>_<student id>_attempt_<YYYY-MM-DD-HH-MM-SS>_<notebook>.ipynb
c.ZipCollectApp.collector_plugin = LmsFileNameCollectorPlugin
c.ZipCollectApp.extractor_plugin = LmsExtractorPlugin
c.FileNameCollectorPlugin.named_regexp = NAMED_REGEXP
c.LmsFileNameCollectorPlugin.timestamp_format = TIMESTAMP_FORMAT
c.ZipCollectApp.strict = False  # a renamed notebook is still collected; grading recognises it by its cells

# --- What of a submission is graded (torchsteps/grading/submission_files.py) ----------------------------
# Links and special files are left out, never followed; so is any file past these caps, named on the row.
#   c.SubmissionLimits.max_file_mb = 100        # one file, MiB (a notebook over it is that student's reason)
#   c.SubmissionLimits.max_submission_mb = 500  # all the files of one submission, MiB
#   c.SubmissionLimits.max_files = 1000         # files of one submission

# --- No exchange ---------------------------------------------------------------------------------------
# The course hands out release/ and collects through an LMS; feedback goes back as one zip per student
# (feedback_zips/). Without these lines nbgrader looks for its shared exchange folder and the formgrader
# warns that it does not exist; with them, release/collect through the exchange say what to do instead.
# Remove them to use nbgrader's exchange.
c.ExchangeFactory.list = NoExchangeList
c.ExchangeFactory.release_assignment = NoReleaseAssignment
c.ExchangeFactory.collect = NoCollect
c.ExchangeFactory.release_feedback = NoReleaseFeedback
c.ExchangeFactory.fetch_assignment = NoFetchAssignment
c.ExchangeFactory.fetch_feedback = NoFetchFeedback
c.ExchangeFactory.submit = NoSubmit

# --- Executing student code -----------------------------------------------------------------------
# Every kernel runs in a bubblewrap sandbox (torchsteps.sandbox): it sees a private copy of the files
# handed out with the assignment (every file of release/<assignment>/ but the notebooks: here checks.py)
# and a read-only Python, nothing else of the course; no network; limits per kernel.
# The limits' values and units live once, in the traits of torchsteps.sandbox.SandboxedKernelManager
# (`nbgrader autograde --help-all | grep -A3 SandboxedKernelManager` lists them); change one here, e.g.
#   c.SandboxedKernelManager.memory_mb = 4096      # address space per process, MiB
#   c.SandboxedKernelManager.cpu_seconds = 300     # CPU time per process, s
#   c.SandboxedKernelManager.scratch_mb = 512      # bytes a notebook may have written, MiB (default 256)
#   c.SandboxedKernelManager.scratch_inodes = 8192 # files + folders + links it may have (default 4096)
#   c.SandboxedKernelManager.cgroup_memory_mb = 4096 # memory and written files together, MiB (default 3072)
# Everything a notebook may write (working folder, /tmp, /dev/shm, HOME, caches) is one tmpfs per kernel,
# gone with the kernel; its pages are memory and count against cgroup_memory_mb with the kernel's own
# memory (a memory cgroup per sandbox, when grading as root). Once either is full the notebook's remaining
# cells are not run, with the reason on each.
# Without a sandbox (not Linux, bubblewrap missing) grading stops, unless
# c.SandboxedKernelManager.allow_unsandboxed = True (or `python -m torchsteps grade --unsandboxed`).

c.GuardedExecute.timeout = 30  # seconds per cell
c.GuardedExecute.notebook_timeout = 120  # seconds for the whole notebook
# Output kept, in characters (about bytes), counting every message kind (stream, display, update_display,
# execute_result, error name/value/traceback, widget comms); the rest is dropped with a visible marker.
c.GuardedExecute.max_output_bytes = 2_000_000  # per notebook
c.GuardedExecute.max_cell_output_bytes = 500_000  # per cell
# Feedback hides this course folder's path too (HideGradingPaths, set by harden()).
c.HideGradingPaths.extra_paths = [c.CourseDirectory.root]
# Output limit: lines per cell and traceback lines kept in the autograded notebook.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 40
