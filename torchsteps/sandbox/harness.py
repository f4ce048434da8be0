"""The harness in the student kernel: runs one student function per request and reports data only.

Loaded by :class:`torchsteps.nbgrader_plugins.trusted_execute.TrustedExecute` into the student kernel before any cell of
the notebook runs (its source, with :mod:`.crossing`'s, is executed in a private module; nothing of
torchsteps is importable in the sandbox). The grader process never runs here and the hidden tests'
source never comes here: a request names a function of the notebook and carries its arguments.

For each call the harness measures what only this process can see and returns it as data next to the
result: the arguments after the call (the grader copies changes into its own objects), which parts of
the result are the arguments themselves or views into their memory (the grader rebuilds them as views
into its own arguments), the global random states and grad mode after the call, and, when the grader
asks, the torch operations whose tensors sat on more than one device; when the function raised, its
traceback (its own frames), which the grader shows only if the test fails with it. Student code runs in this process
and can change all of it: these are facts the grader cross-checks where it can, not verdicts.

During a test cell the host runs :func:`serve`, which takes requests over a UNIX socket (a frame: header
length, payload length, JSON header ``{"op", "name"}``, payload) and answers each with one frame (length,
:mod:`.crossing` message) until the host closes the socket.
"""

import builtins
import random
import sys
import traceback

import numpy as np
import torch

import _torchsteps_crossing as crossing  # noqa: E402 (registered by the loader just before this runs)

MAX_DEVICE_RECORDS = 200
MAX_TRACEBACK_CHARS = 20_000


def _user_ns():
    from IPython import get_ipython

    return get_ipython().user_ns


def _region_of(obj):
    """``(kind, low, size)`` of the memory an argument lives in (CPU only), or None."""
    if isinstance(obj, torch.Tensor):
        if obj.device.type != "cpu":
            return None
        storage = obj.untyped_storage()
        return storage.data_ptr(), storage.nbytes()
    if isinstance(obj, np.ndarray):
        low, high, _ = crossing.memory_region(obj)
        return low, high - low
    return None


def _start_of(obj):
    if isinstance(obj, torch.Tensor):
        return obj.data_ptr(), obj.element_size(), list(obj.shape), [s * obj.element_size() for s in obj.stride()]
    return obj.__array_interface__["data"][0], obj.dtype.itemsize, list(obj.shape), list(obj.strides)


def _view_finder(slots):
    regions = []
    for index, obj in enumerate(slots):
        region = _region_of(obj)
        if region is not None and region[1] > 0:
            regions.append((index, *region))

    def find(obj):
        if isinstance(obj, torch.Tensor) and obj.device.type != "cpu":
            return None
        start, itemsize, shape, strides = _start_of(obj)
        if 0 in shape:
            return None
        low = start + sum(min(0, s * (n - 1)) for n, s in zip(shape, strides))
        high = start + sum(max(0, s * (n - 1)) for n, s in zip(shape, strides)) + itemsize
        for index, base, size in regions:
            if base <= low and high <= base + size:
                return {
                    "t": "view", "slot": index, "kind": "tensor" if isinstance(obj, torch.Tensor) else "ndarray",
                    "dtype": str(obj.dtype).replace("torch.", "") if isinstance(obj, torch.Tensor) else obj.dtype.str,
                    "shape": shape, "strides": strides, "offset": start - base,
                    "rg": bool(getattr(obj, "requires_grad", False)),
                }
        return None

    return find


class _DeviceRecorder(torch.overrides.TorchFunctionMode):
    """Records torch calls whose tensor arguments are on more than one device (the grader replays them)."""

    def __init__(self):
        super().__init__()
        self.records = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if len(self.records) < MAX_DEVICE_RECORDS:
            devices = set()

            def describe(x, nested=True):
                if isinstance(x, torch.Tensor):
                    devices.add(str(x.device))
                    return {"device": str(x.device), "shape": list(x.shape), "dtype": str(x.dtype).replace("torch.", "")}
                if nested and isinstance(x, (list, tuple)):
                    return [describe(i, False) for i in x]
                if x is None or type(x) in (bool, int, float, str):
                    return x
                return None

            described = [describe(a) for a in args]
            described_kw = {str(k): describe(v) for k, v in kwargs.items()}
            if len(devices) > 1:
                self.records.append({"name": str(getattr(func, "__name__", func)), "args": described, "kwargs": described_kw})
        return func(*args, **kwargs)


_AVAILABILITY = (("cuda", "is_available"), ("backends.mps", "is_available"), ("cuda", "device_count"))


def _patch_availability(values):
    """Replace torch.cuda.is_available and friends by constants for one call; returns an undo function."""
    saved = []
    for (path, attr), key in zip(_AVAILABILITY, ("cuda", "mps", "cuda_device_count")):
        if key not in values:
            continue
        owner = torch
        for part in path.split("."):
            owner = getattr(owner, part)
        saved.append((owner, attr, getattr(owner, attr)))
        value = values[key]
        setattr(owner, attr, lambda *a, _v=value, **k: _v)

    def undo():
        for owner, attr, original in saved:
            setattr(owner, attr, original)

    return undo


def _set_global_state(state):
    if "torch_rng" in state:
        torch.random.set_rng_state(state["torch_rng"])
    if "numpy_rng" in state:
        name, keys, pos, has_gauss, gauss = state["numpy_rng"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "python_rng" in state:
        version, internal, gauss = state["python_rng"]
        random.setstate((version, tuple(internal.tolist()), gauss))
    if "grad" in state:
        torch.set_grad_enabled(bool(state["grad"]))
    if "default_dtype" in state:
        torch.set_default_dtype(state["default_dtype"])


def _student_traceback(exc):
    """The part of the traceback inside the student's code (the harness's own frame left out)."""
    frames = traceback.extract_tb(exc.__traceback__)[1:]
    lines = traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc)
    return "Traceback (most recent call last, in your code):\n" + "".join(lines)


_last_state = None  # the global state after the last call of the current serve loop


def call(name, payload):
    """Call the notebook's ``name`` with the arguments in ``payload``; the reply (result and facts) as bytes."""
    request = crossing.loads(payload)
    decoder = crossing.Decoder(request)
    body = decoder.decode(request["tree"])
    args, kwargs, context = body["args"], body["kwargs"], body["context"]
    slots = decoder.slots
    function = _user_ns().get(name)
    global _last_state
    applied = context.get("state") or {}
    _set_global_state(applied)
    # Within one serve loop nothing else runs between calls: the state after the last call still holds.
    before = _last_state if _last_state is not None and not applied else crossing.global_state(_last_state)
    undo = _patch_availability(context.get("availability") or {})
    recorder = _DeviceRecorder() if context.get("record_devices") else None
    outcome = {}
    try:
        if not callable(function):
            raise TypeError(f"{name} is not a function in the notebook")
        if recorder is not None:
            with recorder:
                result = function(*args, **kwargs)
        else:
            result = function(*args, **kwargs)
        outcome["result"] = result
    except BaseException as exc:  # KeyboardInterrupt too: a timeout interrupts the student's function
        outcome["exception"] = exc
        outcome["traceback"] = _student_traceback(exc)[:MAX_TRACEBACK_CHARS]
    finally:
        undo()
    _last_state = crossing.global_state(before)
    state = crossing.changed_state(before, _last_state)
    # Identity and shared memory are judged against the arguments as they were received.
    encoder = crossing.Encoder(refs={id(obj): i for i, obj in enumerate(slots)}, regions=_view_finder(slots))
    reply = {"devices": recorder.records if recorder is not None else []}
    if "exception" in outcome:
        reply["exception"] = encoder.encode(outcome["exception"])
        reply["traceback"] = outcome["traceback"]  # shown by the grader only if the test fails with it
    else:
        try:
            reply["result"] = encoder.encode(outcome["result"])
        except crossing.CrossingError as e:
            reply["exception"] = encoder.encode(TypeError(f"the result of {name} cannot be checked: {e}"))
    # The arguments after the call, each in full (references only between different arguments). The
    # request's own containers (the body, the args tuple, the kwargs dict, the context) never reach the
    # function: they answer "unchanged" (a reference to themselves, which the grader skips).
    encoder.regions = None
    reachable = _argument_slots(slots, body)
    refs = {id(o): i for i, o in enumerate(slots)}
    after = []
    for index, obj in enumerate(slots):
        if index not in reachable or _arrived_unchanged(obj, decoder, index):
            after.append({"t": "ref", "slot": index})
            continue
        del refs[id(obj)]
        encoder.refs = refs
        after.append(encoder.encode(obj))
        refs[id(obj)] = index
    encoder.refs = {}
    reply["after"] = after
    reply["state"] = {k: encoder.encode(v) for k, v in state.items()}
    return crossing.dumps(encoder, {"t": "reply", "reply": reply})


def _arrived_unchanged(obj, decoder, index):
    """True when the tensor or ndarray in argument slot ``index`` is exactly as it arrived: encoded again,
    it gives the node it was rebuilt from (dtype, shape, strides, offset, requires_grad, flags) and the same
    bytes. The reply then says "unchanged" instead of carrying a copy, and the grader keeps its own object
    without rebuilding and comparing that copy (most functions leave their arguments alone)."""
    node = decoder.nodes.get(index)
    if node is None or type(obj) not in (torch.Tensor, torch.nn.Parameter, np.ndarray):
        return False
    scratch = crossing.Encoder()
    try:
        now = scratch.encode(obj)
    except crossing.CrossingError:
        return False
    blob = "storage" if node.get("t") == "tensor" else "region"
    if now.get("t") != node.get("t") or {k: v for k, v in now.items() if k != blob} != {k: v for k, v in node.items() if k != blob}:
        return False
    if now.get(blob) is None or node.get(blob) is None:  # a meta tensor: no bytes
        return now.get(blob) is None and node.get(blob) is None
    return scratch.blobs[now[blob]] == bytes(decoder.blobs[node[blob]])  # bytes == memoryview compares item by item


def _argument_slots(slots, body):
    """The slot numbers of what the function received: the objects inside ``args`` and ``kwargs``'s values.

    The decoder numbers slots depth first as it meets them, and the grader encodes the body as
    ``{"args", "kwargs", "context"}`` in that order: the slots after the args tuple up to the kwargs dict,
    and after the kwargs dict up to the context. A body in another order keeps every slot (the old answer).
    """
    def at(obj):
        return next((i for i, o in enumerate(slots) if o is obj), None)

    args_at, kwargs_at, context_at = at(body.get("args")), at(body.get("kwargs")), at(body.get("context"))
    if None in (args_at, kwargs_at, context_at) or not 0 < args_at < kwargs_at < context_at:
        return set(range(len(slots)))
    return set(range(args_at + 1, kwargs_at)) | set(range(kwargs_at + 1, context_at))


def names(payload):
    """Describe the notebook's names: a function (called through a proxy) or a value (sent as data)."""
    wanted = crossing.loads(payload)
    requested = crossing.Decoder(wanted).decode(wanted["tree"])
    ns = _user_ns()
    encoder = crossing.Encoder()
    described = {}
    for name in requested:
        if not isinstance(name, str) or name not in ns or name.startswith("__"):
            continue
        value = ns[name]
        if type(value).__name__ == "module":
            continue
        if callable(value) and not isinstance(value, (torch.Tensor, np.ndarray, torch.nn.Module, type)):
            described[name] = {"t": "function"}
            continue
        try:
            described[name] = encoder.encode(value)
        except crossing.CrossingError:
            described[name] = encoder._encode_plain(object(), 0)
    return crossing.dumps(encoder, {"t": "names", "names": described})


def _receive(connection, size):
    data = bytearray()
    while len(data) < size:
        chunk = connection.recv(min(size - len(data), 1 << 20))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _flush_written(*streams):
    """Flush what the call printed, so it reaches the host before the reply. ipykernel's flush is a round
    trip to its IO thread (about 0.2 ms) even with nothing written: streams that say nothing is pending
    (``_flush_pending``, ipykernel 6 and 7) are skipped."""
    for stream in streams:
        if getattr(stream, "_flush_pending", True):
            try:
                stream.flush()
            except Exception:  # a stream the student's code replaced
                pass


def serve(path):
    """Answer the grader's requests from the socket at ``path`` until the host closes it."""
    import json
    import socket

    global _last_state
    _last_state = None  # the notebook's cells ran since the last serve loop
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(path)
    try:
        while True:
            head = _receive(connection, 12)
            if head is None:
                return
            header = _receive(connection, int.from_bytes(head[:4], "little"))
            payload = _receive(connection, int.from_bytes(head[4:], "little"))
            if header is None or payload is None:
                return
            request = json.loads(header)
            try:
                if request.get("op") == "call":
                    reply = call(str(request.get("name")), payload)
                else:
                    reply = names(payload)
            except crossing.CrossingError as e:
                encoder = crossing.Encoder()
                reply = crossing.dumps(encoder, {"t": "reply", "reply": {
                    "exception": encoder.encode(TypeError(f"the arguments could not be received: {e}")),
                    "after": [], "state": {}, "devices": []}})
            _flush_written(sys.stdout, sys.stderr)
            connection.sendall(len(reply).to_bytes(8, "little") + reply)
    finally:
        connection.close()


builtins.__torchsteps_harness__ = sys.modules[__name__]
