"""Limits the execute step enforces on what a notebook sends and writes (issue 11).

Mixins for :class:`torchsteps.execute.GuardedExecute` (an ``nbclient.NotebookClient``):

- :class:`OutputCap`: every byte a kernel sends for the notebook counts, whatever the message kind
  (``stream`` text, ``display_data``/``execute_result``/``update_display_data`` data and metadata, an
  ``error``'s ename, evalue and traceback, widget ``comm`` messages), against a cap per cell and per
  notebook. What is over is dropped while it arrives (the grader never holds it), and the cell shows a
  visible marker. An error over the cap is kept, shortened, so the cell still fails.
- :class:`WriteLimit`: after each cell, the kernel's writable tmpfs (``SandboxedKernelManager.scratch_mb``
  bytes, ``scratch_inodes`` files) is checked; once it is full, the rest of the notebook is not run and
  each remaining code cell says why.
"""

from __future__ import annotations

import json

from nbformat.v4 import new_output
from traitlets import HasTraits, Integer

__all__ = ["OutputCap", "WriteLimit", "message_size", "TRUNCATED_MARK"]

TRUNCATED_MARK = "[output truncated]"
# An error over the cap keeps this much of its value and traceback (bytes of text), so its cell fails.
_ERROR_KEEP = 1000


def message_size(msg_type: str, content: dict) -> int:
    """Characters of everything in an IOPub message that could end up in the notebook."""
    if msg_type == "stream":
        return len(str(content.get("text", "")))
    if msg_type == "error":
        return (len(str(content.get("ename", ""))) + len(str(content.get("evalue", "")))
                + sum(len(str(line)) for line in content.get("traceback", []) or []))
    if msg_type.startswith("comm"):
        return len(json.dumps(content.get("data", {}), default=str))
    data = content.get("data", {}) or {}
    size = sum(len(v if isinstance(v, str) else json.dumps(v, default=str)) for v in data.values())
    metadata = content.get("metadata")
    return size + (len(json.dumps(metadata, default=str)) if metadata else 0)


def _short(text: str, keep: int) -> str:
    return text if len(text) <= keep else text[:keep] + f" ... {TRUNCATED_MARK}"


class OutputCap(HasTraits):
    """Caps the output of each cell and of the whole notebook (``max_cell_output_bytes``, ``max_output_bytes``)."""

    max_output_bytes = Integer(
        2_000_000, help="output kept per notebook, characters (about bytes), every message kind counted"
    ).tag(config=True)
    max_cell_output_bytes = Integer(
        500_000, help="output kept per cell, characters (about bytes), every message kind counted"
    ).tag(config=True)

    def reset_execution_trackers(self) -> None:
        super().reset_execution_trackers()
        self._notebook_output = 0
        self._cell_output = 0
        self._current_cell = None
        self._marked: set[int] = set()

    def preprocess_cell(self, cell, resources, index):
        # Here, not in async_execute_cell: nbclient's execute_cell is bound to its own coroutine.
        self._cell_output = 0
        self._current_cell = (cell, index)
        return super().preprocess_cell(cell, resources, index)

    def _allowance(self) -> int:
        return max(0, min(self.max_output_bytes - self._notebook_output, self.max_cell_output_bytes - self._cell_output))

    def _count(self, size: int) -> None:
        self._notebook_output += size
        self._cell_output += size

    def _mark(self, outs, cell_index: int) -> None:
        if cell_index in self._marked:
            return
        self._marked.add(cell_index)
        notebook_left = self.max_output_bytes - self._notebook_output
        which = (
            f"the notebook's output passed {self.max_output_bytes} bytes (c.GuardedExecute.max_output_bytes)"
            if notebook_left <= self.max_cell_output_bytes - self._cell_output
            else f"this cell's output passed {self.max_cell_output_bytes} bytes (c.GuardedExecute.max_cell_output_bytes)"
        )
        outs.append(new_output("stream", name="stderr", text=f"\n{TRUNCATED_MARK} {which}; the rest was dropped\n"))

    def output(self, outs, msg, display_id, cell_index):
        msg_type, content = msg["msg_type"], msg.get("content", {})
        size = message_size(msg_type, content)
        allowance = self._allowance()
        if size <= allowance:
            self._count(size)
            return super().output(outs, msg, display_id, cell_index)
        if msg_type == "stream" and allowance > 0:  # the part that fits, then the marker
            content["text"] = str(content.get("text", ""))[:allowance]
            self._count(allowance)
            out = super().output(outs, msg, display_id, cell_index)
            self._mark(outs, cell_index)
            return out
        if msg_type == "error":  # kept, shortened: the cell must still fail
            content["ename"] = _short(str(content.get("ename", "")), 100)
            content["evalue"] = _short(str(content.get("evalue", "")), _ERROR_KEEP)
            content["traceback"] = [f"{TRUNCATED_MARK} traceback dropped (output limit)",
                                    f"{content['ename']}: {content['evalue']}"]
            self._count(message_size("error", content))
            self._mark(outs, cell_index)
            return super().output(outs, msg, display_id, cell_index)
        self._count(min(size, allowance))
        self._mark(outs, cell_index)
        return None

    def _update_display_id(self, display_id, msg):
        if msg["msg_type"] != "update_display_data":  # a display_data/execute_result: counted in output()
            return super()._update_display_id(display_id, msg)
        size = message_size(msg["msg_type"], msg.get("content", {}))
        if size > self._allowance():
            self._count(self._allowance())
            if self._current_cell is not None:
                cell, index = self._current_cell
                self._mark(cell.outputs, index)
            return None
        self._count(size)
        return super()._update_display_id(display_id, msg)

    def handle_comm_msg(self, outs, msg, cell_index):
        size = message_size(msg["msg_type"], msg.get("content", {}))
        if size > self._allowance():
            self._count(self._allowance())
            self._mark(outs, cell_index)
            return None
        self._count(size)
        return super().handle_comm_msg(outs, msg, cell_index)


class WriteLimit(HasTraits):
    """Stops the notebook once its kernel's writable space (bytes or inodes) is full."""

    # A tmpfs is "full" when less than this is free (a page-granular write that failed leaves a little).
    full_margin_bytes = 64 * 1024

    def reset_execution_trackers(self) -> None:
        super().reset_execution_trackers()
        self._write_limit_reason = ""

    def write_limit_reason(self) -> str:
        """Why the kernel's writable space is exhausted, or "" (asks the warm parent; see sandbox.scratch_usage)."""
        usage = getattr(self.km, "scratch_usage", lambda: None)()
        if not usage:
            return ""
        mib = usage["bytes_total"] / (1024 * 1024)
        if usage["bytes_free"] < self.full_margin_bytes:
            return (f"the notebook filled its {mib:.0f} MiB of writable space (working folder, /tmp, /dev/shm; "
                    "c.SandboxedKernelManager.scratch_mb)")
        if usage["inodes_free"] < 1:
            return (f"the notebook made {usage['inodes_total']} files and folders, its limit "
                    "(c.SandboxedKernelManager.scratch_inodes)")
        return ""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and self._write_limit_reason:
            reason = f"{self._write_limit_reason}; later cells were not run"
            cell.outputs = [new_output("error", ename="CellNotRun", evalue=reason, traceback=[f"CellNotRun: {reason}"])]
            return cell, resources
        try:
            return super().preprocess_cell(cell, resources, index)
        finally:
            if cell.cell_type == "code":
                self._write_limit_reason = self.write_limit_reason()
