"""Trusted verdicts: nbgrader's execute step with the test cells run outside the student's process.

::

    host (nbgrader autograde, TrustedExecute)
     ├── student kernel (sandbox A, uid K)           ├── grader process (sandbox B, uid G)
     │   lesson, answer and student cells            │   test cells, visible and hidden
     │   + harness (loaded before any student code)  │   + trusted code only: torch, numpy, checks.py
     │                                               │
     │   <── call f(args) ─── UNIX socket ───────────┤  f is a proxy for the notebook's f
     │   ─── result + facts ──────────────────────-->│  verdict = whether the test cell raised
     │       (data only: crossing.py, no pickle)     │

A test cell (``utils.is_grade(cell) and not utils.is_solution(cell)``) never runs in the student kernel:
:class:`TrustedExecute` sends its source to the grader process (:mod:`torchsteps.sandbox.grader_process`), which
runs it in a namespace of trusted code, gives it proxies for the student's names, and reports its output
and whether it raised. The cell's outputs in the autograded notebook are the grader's output (``stream``
and ``error``), with what the student's function printed while it was called; never an
``execute_result``, so a test cell scores full points exactly when the grader-side code did not raise.
Locked cells that are not graded (the setup cell with the imports) run in both processes. Everything
else runs in the student kernel as with :class:`torchsteps.nbgrader_plugins.execute.GuardedExecute`, whose time budget,
output cap and dead-kernel handling apply to all of it.

In Jupyter and in the pytest self-check nothing changes: there, test cells run in the student's kernel.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from queue import Empty

from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_code_cell, new_output
from nbgrader import utils
from traitlets import Bool, Integer

from ..constants import is_test_cell
from ..sandbox.grader_process import GraderError, get_grader_parent, harness_bootstrap
from .execute import GuardedExecute

__all__ = ["TrustedExecute"]


def _wait(result):
    """The value of a kernel manager method's result, awaited if it is awaitable (sync and async managers).

    (``run_sync`` takes a coroutine function only: a lambda returning a coroutine fails its assertion.)
    """

    async def value():
        return await ensure_async(result)

    return run_sync(value)()


def _trusted_setup_cell(cell) -> bool:
    return cell.cell_type == "code" and utils.is_locked(cell) and not utils.is_grade(cell) and not utils.is_solution(cell)


class TrustedExecute(GuardedExecute):
    """``GuardedExecute`` whose test cells run in a separate, sandboxed grader process (see the module doc)."""

    max_crossing_bytes = Integer(
        64 * 1024 * 1024, help="largest reply the grader process accepts from the student kernel (a call's result, "
                               "the arguments after it and the facts), bytes"
    ).tag(config=True)
    trusted_verdicts = Bool(
        True, help="run test cells in the grader process; False runs them in the student kernel (GuardedExecute)"
    ).tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._grader = None
        self._harness_ready = False
        self._setup_sources: list[tuple[str, str]] = []
        self._serving = None
        self._folder = (resources or {}).get("metadata", {}).get("path")
        try:
            return super().preprocess(nb, resources, km)
        finally:
            if self._grader is not None:
                self._grader.close()
                self._grader = None

    # --- cells ----------------------------------------------------------------------------------------
    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not self.trusted_verdicts:
            return super().preprocess_cell(cell, resources, index)
        if not self._harness_ready and not self._stopped:
            self._load_harness(index)
        if not is_test_cell(cell):
            cell, resources = super().preprocess_cell(cell, resources, index)
            if _trusted_setup_cell(cell):
                self._setup_sources.append((cell.source, f"<setup cell {index}>"))
                self._run_setup(cell.source, f"<setup cell {index}>")
            return cell, resources
        reason = self._reason_not_to_run()  # the same time budget, dead kernel and full disk as other cells
        if reason:
            self._not_run(cell, reason)
            return cell, resources
        cell.outputs = []
        try:
            self._run_test(cell, index)
        finally:
            self._write_limit_reason = self.write_limit_reason()  # the student's code it called may have filled the disk
        self.nb.cells[index] = cell
        return cell, resources

    def _load_harness(self, index):
        self._harness_ready = True
        if getattr(self.km, "harness_preloaded", False):
            return  # forked from a warm parent that loaded it before any student code
        original = self.nb.cells[index]
        try:
            self.execute_cell(new_code_cell(source=harness_bootstrap()), index, store_history=False)
        except DeadKernelError:
            pass  # the first cell finds the dead kernel and reports it
        finally:
            self.nb.cells[index] = original  # nbclient stores the cell it ran at this index

    def _grader_child(self):
        if self._grader is None or self._grader.finished:
            sandboxed, files = getattr(self.km, "_sandboxed", False), list(getattr(self.km, "workdir_files", ["checks.py"]))
            parent = get_grader_parent(self.km, sandboxed, self.max_crossing_bytes)
            try:
                self._grader = parent.start_child(self._folder, files)
            except GraderError:
                if parent.alive():
                    raise
                # It closed itself (its working folder could not be emptied) or died: once more, afresh.
                parent = get_grader_parent(self.km, sandboxed, self.max_crossing_bytes)
                self._grader = parent.start_child(self._folder, files)
            for source, label in self._setup_sources:
                self._exchange(self._grader, "setup", source, label, outputs=None, index=None)
        return self._grader

    def _run_setup(self, source, label):
        try:
            self._exchange(self._grader_child(), "setup", source, label, outputs=None, index=None)
        except (GraderError, TimeoutError) as e:
            self.log.warning("The grader process could not run %s: %s", label, e)

    def _run_test(self, cell, index):
        label = f"<test cell {cell.metadata.nbgrader.get('grade_id', index)}>"
        try:
            grader = self._grader_child()
            try:
                error = self._exchange(grader, "run", cell.source, label, outputs=cell.outputs, index=index)
            finally:
                self._stop_serving(cell.outputs)
        except (GraderError, TimeoutError) as e:
            if self._grader is not None:
                self._grader.parent.close()
                self._grader = None
            error = {"ename": "GraderError", "evalue": f"the test could not be completed: {e}",
                     "traceback": [f"GraderError: the test could not be completed: {e}"]}
        except (DeadKernelError, CellTimeoutError):
            raise
        except Exception as e:
            # Seen after a student cell that had to be interrupted (an endless loop): the student kernel no
            # longer serves the calls as expected. The test cannot be completed, so it fails (like a
            # GraderError); where it happened is named in the output and logged, and the rest is graded.
            import traceback

            frame = traceback.extract_tb(e.__traceback__)[-1]
            self.log.error("Trusted execution of cell %s failed", index, exc_info=True)
            if self._grader is not None:
                self._grader.parent.close()
                self._grader = None
            why = f"{type(e).__name__} at {Path(frame.filename).name}:{frame.lineno} while serving the student kernel"
            error = {"ename": "GraderError", "evalue": f"the test could not be completed: {why}",
                     "traceback": [f"GraderError: the test could not be completed: {why}"]}
        if error:
            cell.outputs.append(new_output("error", **error))

    def _exchange(self, grader, op, source, label, outputs, index):
        """Run one cell in the grader, giving it the student kernel when it asks; return its error (or None).

        The cell's time limit (``timeout``, within the notebook's budget) covers the grader's work and the
        student's functions it calls. When it is spent while the student kernel serves the grader, the
        kernel is interrupted (the call in progress returns ``KeyboardInterrupt`` to the test) and the
        grader gets 10 s more to finish; a grader that still does not answer is ended (``TimeoutError``).
        """
        deadline = time.monotonic() + self._cell_timeout(None)
        interrupted = False
        grader.send(op=op, source=source, label=label)
        while True:
            try:
                message = grader.receive(deadline - time.monotonic())
            except TimeoutError:
                if interrupted or getattr(self, "_serving", None) is None:
                    raise
                if not self.interrupt_on_timeout:
                    raise CellTimeoutError(f"the test cell did not finish within {self._cell_timeout(None)} s") from None
                _wait(self.km.interrupt_kernel())
                if outputs is not None:
                    self._append_stream(outputs, "stderr", "The notebook's code this test called was interrupted: "
                                                           "the cell reached its time limit.\n")
                interrupted, deadline = True, time.monotonic() + 10
                continue
            kind = message.get("op")
            if kind == "stream" and outputs is not None:
                # The grader sends what it printed before its next call and waits ("sync"), so what the
                # student's earlier calls printed, on IOPub, comes first (2 ms for a line still on its way;
                # a later one is placed later in the cell, never lost).
                self._drain(outputs, index, quiet=0.002)
                self._append_stream(outputs, str(message.get("name")), str(message.get("text", "")))
            elif kind == "sync":
                grader.send(op="synced")
            elif kind == "connect":
                reason = self._connect_grader(grader, index)
                if reason:
                    grader.send(op="failed", reason=reason)
            elif kind == "done":
                return message.get("error")
            elif kind == "exited":
                raise GraderError(f"the grader process ended while running the cell (exit status {message.get('status')})")

    def _connect_grader(self, grader, index) -> str:
        """Start the harness's serve loop and pass its connection to the grader; "" or why not."""
        if index is None:
            return "not available in a setup cell"  # a setup cell has no business with the student's names
        if self._stopped:
            return self._stopped
        if getattr(self, "_serving", None) is not None:
            return "the connection to the notebook's code was lost earlier in this cell"
        try:
            self._start_serving(index)
        except (OSError, ConnectionError) as e:
            return f"the notebook's code cannot be called: {e}"
        grader.hand_over(self._serving[0])
        return ""

    def _append_stream(self, outputs, name, text):
        if name not in ("stdout", "stderr") or not text:
            return
        if outputs and outputs[-1].output_type == "stream" and outputs[-1].name == name:
            outputs[-1].text += text
        else:
            outputs.append(new_output("stream", name=name, text=text))

    # --- the student kernel's side of a call ------------------------------------------------------------
    # During a test cell the student kernel runs ONE execute request, the harness's serve loop, which takes
    # calls over a UNIX socket in the sandbox's run/ folder (the same path inside and out) until told to
    # stop: a few hundred calls per notebook cost a socket round trip each instead of a kernel request each.
    def _socket_dir(self) -> Path:
        km = self.km
        if getattr(km, "_zygote", None) is not None:
            return Path(km._zygote.root) / "run"
        if getattr(km, "_sandbox_dir", None):
            return Path(km._sandbox_dir) / "run"
        if getattr(self, "_tmp_socket_dir", None) is None:
            import tempfile

            self._tmp_socket_dir = tempfile.mkdtemp(prefix="torchsteps-harness-")
        return Path(self._tmp_socket_dir)

    def _start_serving(self, index):
        import socket

        path = str(self._socket_dir() / f"harness-{os.urandom(6).hex()}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # The kernel's user connects, so the socket is made 0666 as it is created: never chmod a path in
            # run/, which the kernel can write (a link swapped in before the chmod would be followed).
            umask = os.umask(0o111)
            try:
                listener.bind(path)
            finally:
                os.umask(umask)
            listener.listen(1)
            msg_id = self.kc.execute(
                f"__import__('builtins').__torchsteps_harness__.serve({path!r})",
                store_history=False, allow_stdin=False, stop_on_error=False,
            )
            listener.settimeout(max(1.0, min(30.0, self._cell_timeout(None))))
            try:
                connection, _ = listener.accept()
            except OSError:
                raise ConnectionError("the harness in the student's kernel did not answer") from None
        finally:
            listener.close()
            try:
                os.unlink(path)
            except OSError:
                pass
        self._serving = (connection, msg_id, index)

    def _drain(self, outputs, index, until_idle=False, timeout=0.0, quiet=0.0):
        """Move the serve loop's outputs (what the student's function printed) into the test cell's outputs:
        until the serve loop is idle (``until_idle``, at most ``timeout`` s), else what has come, waiting for
        more while messages keep coming within ``quiet`` s (ZeroMQ delivers a few hundred µs late)."""
        if not getattr(self, "_serving", None):
            return True
        _, msg_id, _ = self._serving
        deadline = time.monotonic() + timeout
        collected = []

        async def pull():
            while True:
                left = deadline - time.monotonic()
                try:
                    msg = await ensure_async(self.kc.get_iopub_msg(timeout=max(0.0, min(left, 1.0)) if until_idle else quiet))
                except Empty:
                    if not until_idle or time.monotonic() >= deadline:
                        return False
                    if not await ensure_async(self.km.is_alive()):
                        return False
                    continue
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["msg_type"]
                if kind == "status" and msg["content"].get("execution_state") == "idle":
                    return True
                if kind in ("stream", "display_data", "execute_result", "error"):
                    self.output(collected, msg, None, index)

        idle = run_sync(pull)()
        for out in collected:
            if outputs is None:
                break
            if out.output_type == "stream":
                self._append_stream(outputs, out.name, out.text)
            elif out.output_type in ("display_data", "execute_result"):
                # Shown, but never as an execute_result: a test cell's score comes from the grader alone.
                outputs.append(new_output("display_data", data=out.get("data", {}), metadata={}))
            elif out.output_type == "error":
                self._append_stream(outputs, "stderr", f"{out.get('ename')}: {out.get('evalue')}\n")
        return idle

    def _stop_serving(self, outputs):
        """End the serve loop (the socket closes) and collect what it printed last."""
        if not getattr(self, "_serving", None):
            return
        connection, msg_id, index = self._serving
        try:
            connection.close()
        finally:
            idle = self._drain(outputs, index, until_idle=True, timeout=10)
            self._serving = None
        if not idle:
            if not _wait(self.km.is_alive()):
                memory = getattr(self.km, "memory_limit_reason", lambda: "")()
                self._stopped = (
                    f"{memory}: the kernel was stopped while a test called the notebook's code in cell {index}; "
                    "later cells were not run" if memory else
                    f"the kernel died while a test called the notebook's code in cell {index} (memory or CPU limit, "
                    "a crash, or the code ended the process); later cells were not run"
                )
            else:
                _wait(self.km.interrupt_kernel())
                self._drain(None, index, until_idle=True, timeout=5)
