"""Students graded in the same worker share nothing (issue 11), and each notebook's writes are bounded.

Kernel level (real bubblewrap, real warm kernels through nbclient, as in test_sandbox.py): a first kernel
plants something in every place it can write (found by walking the whole file system it sees, not from
a list), read-only folders, IPython startup files, caches, a System V shared-memory segment and
background processes; a second kernel from the same warm parent finds none of it. Then the size and
inode limits of the kernel's writable space, with small limits so the test writes little.
The grading-level proof (a later student graded exactly as alone) is in test_hostile_class.py.
"""

from __future__ import annotations

import json

import pytest

from test_sandbox import run_in_sandbox
from torchsteps.sandbox import SandboxedKernelManager, SandboxUnavailable, check_sandbox
from torchsteps.sandbox.kernel_manager import _python_roots

try:
    check_sandbox()
except SandboxUnavailable as why:  # pragma: no cover - CI installs bubblewrap
    pytest.skip(f"no sandbox on this machine: {why}", allow_module_level=True)

if not SandboxedKernelManager().isolated:  # pragma: no cover - the tests run as root
    pytest.skip("per-kernel isolation needs the grader to run as root", allow_module_level=True)

SHM_KEY = 0x7357
# Top-level names in the sandbox's /tmp that are the read-only Python, bound there when the environment
# lives under /tmp (a clone in /tmp/...): not something a kernel wrote.
PYTHON_UNDER_TMP = sorted({r.split("/")[2] for r in _python_roots() if r.startswith("/tmp/")})

# Every folder the kernel can write, from a walk of its whole file system (not /proc, /sys).
WRITABLE = r'''
import os, json
def writable_dirs():
    found = []
    for top in sorted(os.listdir('/')):
        if top in ('proc', 'sys'):
            continue
        for dirpath, dirnames, _ in os.walk('/' + top):
            if os.access(dirpath, os.W_OK):
                found.append(dirpath)
    return found
'''

SHM = f'''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
KEY = {SHM_KEY}
'''

PLANT = [
    WRITABLE + "places = writable_dirs()\nfor d in places:\n    open(os.path.join(d, 'planted-by-a'), 'w').write('a')\nprint(json.dumps(places))",
    # A read-only folder with a file (the old cleanup, as the kernel's user, could not remove it).
    "os.makedirs('/tmp/ro/inner'); open('/tmp/ro/inner/planted-by-a', 'w').write('a')\n"
    "os.chmod('/tmp/ro/inner', 0o555); os.chmod('/tmp/ro', 0o555)\n"
    "os.makedirs('ro-here'); open('ro-here/planted-by-a', 'w').write('a'); os.chmod('ro-here', 0o555)",
    # IPython startup files and config, matplotlib and torch caches, user site-packages.
    "import IPython, site\n"
    "ipdir = IPython.paths.get_ipython_dir()\n"
    "planted = []\n"
    "for base in sorted({ipdir, os.path.expanduser('~/.ipython'), '/tmp/.ipython'}):\n"
    "    try:\n"
    "        os.makedirs(base + '/profile_default/startup', exist_ok=True)\n"
    "        open(base + '/profile_default/startup/00-planted-by-a.py', 'w').write('PLANTED = True\\n')\n"
    "        open(base + '/profile_default/ipython_kernel_config.py', 'w').write('c.InteractiveShellApp.exec_lines = [\"PLANTED = True\"]\\n')\n"
    "        planted.append(base)\n"
    "    except PermissionError:\n"
    "        pass  # this kernel's own IPython profile is read-only for it\n"
    "for var in ('MPLCONFIGDIR', 'TORCH_HOME', 'XDG_CACHE_HOME', 'XDG_CONFIG_HOME'):\n"
    "    os.makedirs(os.environ[var], exist_ok=True); open(os.path.join(os.environ[var], 'planted-by-a'), 'w').write('a')\n"
    "os.makedirs(site.getusersitepackages(), exist_ok=True)\n"
    "open(os.path.join(site.getusersitepackages(), 'usercustomize.py'), 'w').write('PLANTED = True\\n')\n"
    "print(planted)",
    # System V shared memory that outlives the kernel unless the IPC namespace goes with it.
    SHM + "sid = libc.shmget(KEY, 4096, 0o1666)\naddr = libc.shmat(sid, None, 0)\nctypes.memmove(addr, b'secret-of-a', 11)\nprint(sid >= 0)",
    # Background processes: one in a new session, one double-forked, writing into /tmp forever.
    "import subprocess, time\n"
    "subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        while True:\n"
    "            try:\n                open('/tmp/planted-late', 'w').write('a')\n            except OSError:\n                pass\n"
    "            time.sleep(0.05)\n"
    "    os._exit(0)\n"
    "time.sleep(0.3); print(os.path.exists('/tmp/planted-late'))",
    # The socket folder the grader shares with the kernel is not writable once the kernel runs.
    "from ipykernel.kernelapp import IPKernelApp\n"
    "run = os.path.dirname(IPKernelApp.instance().connection_file)\n"
    "try:\n    open(os.path.join(run, 'planted-by-a'), 'w').write('a')\n    print('wrote', run)\nexcept OSError as e:\n    print('refused', e.errno)",
]

READ = [
    WRITABLE + "found = []\nfor d in writable_dirs() + ['/opt', '/home', '/etc', '/var']:\n"
    "    for dirpath, _, files in os.walk(d):\n        found += [os.path.join(dirpath, f) for f in files if f.startswith('planted')]\n"
    "print(json.dumps(sorted(set(found))))",
    "print('PLANTED' in globals(), sorted(os.listdir('/tmp')), sorted(os.listdir('.')))",
    SHM + "sid = libc.shmget(KEY, 0, 0)\nprint(sid, ctypes.get_errno())",
    "print(len([p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid(), os.getppid())]))",
    # In a user namespace the kernel would be root again and could mount a tmpfs of any size.
    "import subprocess, threading, torch\n"
    "r = subprocess.run(['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c', 'mount -t tmpfs big /tmp && echo mounted'], capture_output=True, text=True)\n"
    "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
    "torch.set_num_threads(2); x = torch.ones(1000, 1000) @ torch.ones(1000, 1000)\n"
    "print(r.returncode, r.stdout.strip() or r.stderr.strip().split(':')[-1].strip(), int(x[0, 0]))",
    "import os\nprint(os.getppid())",
]


@pytest.fixture(scope="module")
def plant_then_read(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nb")
    (folder / "checks.py").write_text("VALUE = 1\n")
    first = run_in_sandbox(PLANT + ["import os\nprint(os.getppid())"], folder)
    second = run_in_sandbox(READ, folder)
    return first, second


def test_the_first_kernel_planted_everywhere_it_could(plant_then_read):
    first, _ = plant_then_read
    assert all(not errors for _, errors in first), first
    places = json.loads(first[0][0])
    # The walk found the working folder, /tmp, /dev/shm and HOME: the planting is real.
    for place in ("/home/student/work", "/tmp", "/dev/shm", "/home/student"):
        assert place in places, places
    # /tmp/.ipython was every kernel's IPYTHONDIR before issue 11: a startup file there is planted.
    assert "'/tmp/.ipython'" in first[2][0], first[2]
    assert first[3][0] == "True" and first[4][0] == "True"
    assert first[5][0].startswith("refused"), first[5]


def test_a_later_kernel_finds_nothing_planted(plant_then_read):
    first, second = plant_then_read
    assert all(not errors for _, errors in second), second
    assert second[-1][0] == first[-1][0], "both kernels should come from the same warm parent"
    assert json.loads(second[0][0]) == []
    # no startup file ran, /tmp empty (but for the read-only Python when the environment lives under /tmp,
    # e.g. a checkout in /tmp), a fresh copy of the working folder
    assert second[1][0] == f"False {PYTHON_UNDER_TMP} ['checks.py']"


def test_ipc_objects_do_not_survive_the_kernel(plant_then_read):
    _, second = plant_then_read
    sid, err = second[2][0].split()
    assert int(sid) == -1 and int(err) == 2  # ENOENT: the segment died with the first kernel's namespace


def test_no_user_namespaces_but_threads_and_processes_work(plant_then_read):
    _, second = plant_then_read
    assert second[4][0] == "1 Operation not permitted 1000", second[4]


def test_background_processes_do_not_survive_the_kernel(plant_then_read):
    _, second = plant_then_read
    assert int(second[3][0]) == 0


FILL = (
    "import errno\nwritten = 0\nchunk = b'x' * (1 << 20)\n"
    "try:\n    for i in range(10_000):\n        with open(f'{PLACE}/fill-{i}', 'wb') as f:\n            f.write(chunk)\n"
    "        written += 1\nexcept OSError as e:\n    print('stopped', errno.errorcode[e.errno], written)"
)


def test_bytes_written_are_limited_in_every_place_together(tmp_path):
    """/tmp, the working folder and /dev/shm share one limit: half in one, the rest fails in another."""
    out = run_in_sandbox([
        FILL.replace("{PLACE}", "/tmp").replace("range(10_000)", "range(6)"),
        FILL.replace("{PLACE}", "/dev/shm"),
        FILL.replace("{PLACE}", "."),
        "import os, shutil\nfor f in os.listdir('/tmp'):\n    if f.startswith('fill-'):\n        os.remove('/tmp/' + f)\n" + FILL.replace("{PLACE}", "/home/student"),
    ], tmp_path, scratch_mb=16, max_file_mb=64)
    assert out[0] == ("", []), out  # 6 MiB in /tmp fit
    stopped, code, written = out[1][0].split()
    assert (stopped, code) == ("stopped", "ENOSPC") and 7 <= int(written) <= 10, out
    assert out[2][0] == "stopped ENOSPC 0", out  # nothing left for the working folder
    assert out[3][0].split()[:2] == ["stopped", "ENOSPC"] and 4 <= int(out[3][0].split()[2]) <= 7, out


def test_inodes_are_limited(tmp_path):
    code = (
        "import errno, os\nmade = 0\ntry:\n    for i in range(100_000):\n        os.mkdir(f'/tmp/d{i}') if i % 2 else open(f'f{i}', 'w').close()\n"
        "        made += 1\nexcept OSError as e:\n    print('stopped', errno.errorcode[e.errno], made)"
    )
    out = run_in_sandbox([code], tmp_path, scratch_inodes=500)
    stopped, err, made = out[0][0].split()
    assert (stopped, err) == ("stopped", "ENOSPC") and 450 <= int(made) < 500, out


def test_cold_kernel_is_isolated_the_same_way(tmp_path):
    """warm_start = False: the kernel goes through the same isolation, without a warm parent."""
    (tmp_path / "checks.py").write_text("VALUE = 1\n")
    out = run_in_sandbox([
        "import os, subprocess\nst = os.statvfs('/tmp')\n"
        "r = subprocess.run(['unshare', '--user', 'true'], capture_output=True)\n"
        "print(os.getuid() != 0, sorted(os.listdir('.')), st.f_blocks * st.f_frsize // 2**20, st.f_files, r.returncode)",
    ], tmp_path, warm_start=False, scratch_mb=64, scratch_inodes=1000)
    assert out[0] == ("True ['checks.py'] 64 1000 1", []), out


# --- memory and written files under one limit (a memory cgroup per sandbox) ---------------------------

WRITE_FILES = (  # 240 MiB in the tmpfs, as four files under the 64 MiB file-size limit
    "import os\nfor i in range(4):\n    with open(f'/dev/shm/f{i}', 'wb') as f:\n        f.write(os.urandom(60 * 2**20))\nprint('written')"
)
ALLOCATE = "block = bytearray(320 * 2**20)  # zero-filled: every page is touched\nprint('allocated', len(block) >> 20)"


def _run_guarded(cells, folder, **limits):
    """The cells through GuardedExecute (as autograde runs them) with ``limits`` of the sandbox."""
    from nbformat.v4 import new_code_cell, new_notebook
    from traitlets.config import Config

    from torchsteps.nbgrader_plugins.execute import GuardedExecute

    config = Config()
    for key, value in limits.items():
        setattr(config.SandboxedKernelManager, key, value)
    config.GuardedExecute.timeout = 120
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb, _ = GuardedExecute(config=config).preprocess(nb, {"metadata": {"path": str(folder)}})
    return [json.dumps(c.outputs) for c in nb.cells]


def test_memory_and_written_files_share_one_limit(tmp_path):
    """512 MiB for both: 320 MiB of memory fits, and so do 240 MiB of files; both together stop the
    kernel, with the reason. Each alone stays far below its own limit (memory_mb 3072, scratch_mb 300)."""
    from torchsteps.sandbox.memory_cgroup import CgroupUnavailable, MemoryCgroup

    try:
        MemoryCgroup.create(2**30).remove()
    except CgroupUnavailable as why:  # pragma: no cover - grading as root in a container has one
        pytest.skip(f"no memory cgroup can be made here: {why}")
    limits = dict(cgroup_memory_mb=512, scratch_mb=300)
    alone = _run_guarded([ALLOCATE, "del block\n" + WRITE_FILES], tmp_path, **limits)
    assert "allocated 320" in alone[0] and "written" in alone[1], alone
    together = _run_guarded([WRITE_FILES, ALLOCATE, "print('after')"], tmp_path, **limits)
    assert "written" in together[0], together
    assert "allocated" not in together[1] and "after" not in together[2], together
    assert "used more than its 512 MiB of memory" in together[2] and "cgroup_memory_mb" in together[2], together
    # the OOM killer took the kernel, not the warm parent: the next notebook of this process is graded
    assert "allocated 320" in _run_guarded([ALLOCATE], tmp_path, **limits)[0]
    # without the cgroup the same notebook runs to the end: the limit is what stopped it
    unlimited = _run_guarded([WRITE_FILES, ALLOCATE, "print('after')"], tmp_path, cgroup_memory_mb=0, scratch_mb=300)
    assert "allocated 320" in unlimited[1] and "after" in unlimited[2], unlimited
