"""The sandbox stops each escape it is meant to stop (real bubblewrap, real kernels via nbclient)."""

from __future__ import annotations

import socket
import threading

import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from conftest import REPO
from torchsteps.sandbox import SandboxedKernelManager, SandboxUnavailable, check_sandbox

try:
    check_sandbox()
except SandboxUnavailable as why:  # pragma: no cover - CI installs bubblewrap
    pytest.skip(f"no sandbox on this machine: {why}", allow_module_level=True)


def run_in_sandbox(cells, tmp_path, timeout=60, **limits):
    """Execute ``cells`` in a sandboxed kernel whose notebook folder is ``tmp_path``; outputs per cell."""
    config = Config()
    config.SandboxedKernelManager.workdir_files = ["checks.py"]
    for key, value in limits.items():
        setattr(config.SandboxedKernelManager, key, value)
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=True, config=config,
        kernel_manager_class=SandboxedKernelManager, resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = []
    for cell in nb.cells:
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        errors = [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"]
        outputs.append((text.strip(), errors))
    return outputs


@pytest.fixture(scope="module")
def escapes(tmp_path_factory):
    """One kernel tries every filesystem, network and identity escape; returns its outputs."""
    folder = tmp_path_factory.mktemp("nb")
    (folder / "checks.py").write_text("VALUE = 1\n")
    (folder / "torch.py").write_text("raise SystemExit('student torch.py shadowed torch')\n")
    (folder / "other_student.ipynb").write_text("{}")
    # Handed-out files in a subfolder are copied; a link among them is not followed.
    (folder / "data").mkdir()
    (folder / "data" / "readings.csv").write_text("day,celsius\n")
    (folder / "data" / "link.csv").symlink_to(REPO / "pyproject.toml")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    threading.Thread(target=_accept_quietly, args=(server,), daemon=True).start()
    secret = REPO / "source"
    cells = [
        "import os, sys, socket, torch, checks\nprint(os.getuid(), os.getcwd(), sorted(os.listdir('.')), torch.__version__.split('+')[0])",
        f"print(os.path.exists({str(secret)!r}), os.path.exists({str(REPO / 'gradebook.db')!r}), os.path.exists({str(REPO / 'submitted')!r}))",
        f"s = socket.socket()\ns.settimeout(3)\ntry:\n    s.connect(('127.0.0.1', {port}))\n    print('connected')\nexcept OSError as e:\n    print('refused', type(e).__name__)",
        "print(sorted(k for k in os.environ if 'TOKEN' in k or 'SECRET' in k or 'DB_URL' in k))",
        "print(len([p for p in os.listdir('/proc') if p.isdigit()]))",
        f"try:\n    open({str(REPO / 'pyproject.toml')!r}).read()\n    print('read')\nexcept OSError as e:\n    print('blocked', type(e).__name__)",
        f"try:\n    open({sys_prefix_file()!r}, 'a').write('x')\n    print('wrote')\nexcept OSError as e:\n    print('read-only', type(e).__name__)",
        "print(sorted(os.listdir('data')), open('data/readings.csv').read().strip())",
    ]
    try:
        return run_in_sandbox(cells, folder, workdir_files=["checks.py", "data/*"])
    finally:
        server.close()


def _accept_quietly(server):
    try:
        server.accept()
    except OSError:
        pass  # closed when the test ends


def sys_prefix_file():
    import sys

    return f"{sys.prefix}/pyvenv.cfg"


def test_kernel_runs_as_an_unprivileged_user_in_a_private_copy(escapes):
    text, errors = escapes[0]
    assert not errors, errors
    uid, cwd, files, version = text.split(" ", 3)
    assert int(uid) != 0
    assert cwd == "/home/student/work"
    assert "checks.py" in files and "torch.py" not in files and "other_student.ipynb" not in files
    assert version.endswith("2.13.0'") or "2.13.0" in version  # the real torch, not the student's torch.py


def test_handed_out_files_in_subfolders_are_copied_and_links_are_not_followed(escapes):
    assert escapes[7] == ("['readings.csv'] day,celsius", [])


def test_course_files_do_not_exist_inside(escapes):
    assert escapes[1] == ("False False False", [])
    assert escapes[5][0] == "blocked FileNotFoundError"


def test_no_network(escapes):
    assert escapes[2][0].startswith("refused"), escapes[2]


def test_environment_is_cleared(escapes):
    assert escapes[3][0] == "[]"


def test_only_its_own_processes_are_visible(escapes):
    assert int(escapes[4][0]) <= 5


def test_python_environment_is_read_only(escapes):
    assert escapes[6][0].startswith("read-only"), escapes[6]


def test_memory_limit(tmp_path):
    # A started kernel already has about 1,000 MiB of address space (torch's reservations, 11 threads'
    # stacks): 1536 MiB leaves room to report the MemoryError, far below the 15 GiB asked for.
    out = run_in_sandbox(["import numpy as np\nx = np.ones(2_000_000_000)\nprint('allocated')", "print('alive')"], tmp_path, memory_mb=1536)
    assert out[0][1] and "MemoryError" in out[0][1][0]
    assert out[1][0] == "alive"


def test_process_limit(tmp_path):
    code = (
        "import os, time\nn = 0\ntry:\n    for _ in range(500):\n        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\n"
        "        n += 1\nexcept OSError as e:\n    print('stopped', type(e).__name__, n)"
    )
    out = run_in_sandbox([code], tmp_path, max_processes=64)
    assert out[0][0].startswith("stopped BlockingIOError"), out
    assert int(out[0][0].split()[-1]) < 64


def test_file_size_limit(tmp_path):
    code = "try:\n    open('big', 'wb').write(b'x' * (3 * 1024 * 1024))\n    print('wrote')\nexcept OSError as e:\n    print('limited', e.errno)"
    out = run_in_sandbox([code], tmp_path, max_file_mb=1)
    assert out[0][0] == "limited 27", out  # EFBIG


def test_cpu_limit_kills_a_spinning_kernel(tmp_path):
    from nbclient.exceptions import DeadKernelError

    with pytest.raises(DeadKernelError):
        run_in_sandbox(["while True:\n    pass"], tmp_path, timeout=60, cpu_seconds=3)


def test_warm_kernels_share_nothing_and_plant_nothing(tmp_path):
    """Two notebooks in a row from the same warm parent: the second sees nothing the first left.

    Regression: the first kernel plants links in its run/ and working folders pointing at a root-owned
    file outside; the grader (root) must not follow them when it sets up the next kernel.
    """
    import os

    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    first = run_in_sandbox([
        "import os, subprocess\n"
        "from ipykernel.kernelapp import IPKernelApp\n"
        "run = os.path.dirname(IPKernelApp.instance().connection_file)\n"
        f"try:\n    os.symlink({str(victim)!r}, os.path.join(run, 'planted'))\nexcept OSError as e:\n    print('run/ refused', e.errno)\n"
        f"os.symlink({str(victim)!r}, 'planted-here')\n"
        "open('/tmp/secret', 'w').write('from the first student')\n"
        "open('secret', 'w').write('from the first student')\n"
        "subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
        "print(os.getppid())"
    ], tmp_path)
    assert not first[0][1], first
    refusal, first_parent = first[0][0].splitlines()
    assert refusal == "run/ refused 30", "the socket folder must be read-only for the kernel (issue 11)"
    second = run_in_sandbox([
        "import os\n"
        "others = [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid(), os.getppid())]\n"
        "print(os.getppid(), os.path.exists('/tmp/secret'), os.path.exists('secret'), os.path.lexists('planted-here'), len(others))"
    ], tmp_path)
    parent, tmp_secret, work_secret, link, others = second[0][0].split()
    assert parent == first_parent, "both kernels should come from the same warm parent"
    assert (tmp_secret, work_secret, link) == ("False", "False", "False")
    assert int(others) == 0, "a process the first kernel started is still running"
    assert os.stat(victim).st_uid == 0 and victim.read_text() == "root's file\n"


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
def test_output_written_any_way_reaches_the_notebook_with_empty_flushes_skipped(tmp_path, warm):
    """The kernel's stdout/stderr flush returns at once when nothing is pending (zygote._skip_empty_flushes);
    whatever was written, by print, by file descriptor, by a child process, is still in its cell."""
    outputs = run_in_sandbox([
        "from ipykernel.iostream import OutStream\nprint(OutStream.flush.skips_empty)",
        "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)",
        "import os, time\nos.write(1, b'by file descriptor\\n')\ntime.sleep(0.5)",
        "import subprocess, time\nsubprocess.run(['echo', 'from a child process'])\ntime.sleep(0.5)",
        "pass",
        "print('last')",
    ], tmp_path, warm_start=warm)
    texts = [text for text, errors in outputs]
    assert all(not errors for _, errors in outputs), outputs
    assert texts == ["True", "to stdout\nto stderr", "by file descriptor", "from a child process", "", "last"], texts


def test_environment_under_tmp_stays_visible(tmp_path, monkeypatch):
    """Regression: the sandbox's own /tmp was mounted over a Python environment cloned under /tmp."""
    import torchsteps.sandbox.kernel_manager as sandbox

    monkeypatch.setattr(sandbox, "_python_roots", lambda: ["/tmp/clone/.venv"])
    command = SandboxedKernelManager().sandbox_command(["/tmp/clone/.venv/bin/python", "-m", "ipykernel_launcher"], tmp_path)
    tmpfs = command.index("--tmpfs")
    venv_bind = next(i for i, arg in enumerate(command) if arg == "--ro-bind" and command[i + 1] == "/tmp/clone/.venv")
    assert tmpfs < venv_bind, "the environment under /tmp is hidden by the sandbox's /tmp"
