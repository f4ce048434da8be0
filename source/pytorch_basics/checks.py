"""Checks used by the test cells of the ``pytorch_basics`` assignment.

Every check raises ``AssertionError`` with a message that names the mistake
("expected dtype torch.float32, got torch.int64") and never prints the expected
values of a hidden test, so a failing hidden test tells the student *what kind*
of mistake they made without giving the answer away.

The checks compare types exactly (``type(x) is torch.Tensor``), so an object
that merely pretends to be a tensor (a subclass overriding ``__eq__``, say) does
not pass. dtype, shape and device are compared before values (``torch.equal``
alone ignores dtype: ``torch.equal(torch.tensor([1]), torch.tensor([1.]))`` is True).

This file is released beside the notebooks and, at autograde time, nbgrader
overwrites the student's copy with the instructor's version.

Nothing here depends on state a student's cell can change: the module has its own
namespace (``from torch import *`` in the notebook does not reach it), every tensor it
builds gets an explicit dtype, and the context managers below restore what they change.
Facts about the student's objects (shared memory, identity, unchanged inputs, the global
random state, device availability) are asked only through these helpers, so a grader
that calls the student's functions in another process can answer them there.
"""

import contextlib
import math

import numpy as np
import torch

__all__ = [
    "check_tensor",
    "check_ndarray",
    "check_value",
    "check_dtype",
    "check_shares_memory",
    "check_unchanged",
    "check_new_object",
    "snapshot",
    "layout",
    "LAYOUTS",
    "simulated_availability",
    "default_dtype",
    "unchanged_global_rng",
    "one_device_per_operation",
]


def _fail(what, message):
    raise AssertionError(f"{what}: {message}")


def _type_name(obj):
    """``int``, ``torch.Tensor``, ``numpy.ndarray``: the name a student would write."""
    cls = type(obj)
    module = {"builtins": "", "torch._tensor": "torch", "numpy._core.multiarray": "numpy"}.get(
        cls.__module__, cls.__module__
    )
    return f"{module}.{cls.__qualname__}" if module else cls.__qualname__


def check_tensor(actual, expected, what="result", *, rtol=0.0, atol=0.0, check_requires_grad=True,
                 show_expected=False):
    """Fail unless ``actual`` is a ``torch.Tensor`` that matches ``expected`` exactly.

    Compared, in this order: exact type, dtype, shape, device, requires_grad
    (when ``check_requires_grad``), then values (NaN equals NaN). ``rtol`` and
    ``atol`` default to 0 (exact); pass tolerances for floating-point results
    that may be computed in a different but correct order: an element passes when
    ``|actual - expected| <= atol + rtol * |expected|`` (``torch.isclose``).

    The message names the first differing element (its index and the value
    received); ``show_expected=True`` (visible checks, whose expected values the
    student can read anyway) adds the expected value there.

    Raises:
        AssertionError: naming the first property that differs.
    """
    if type(actual) is not torch.Tensor:
        _fail(what, f"expected a torch.Tensor, got {_type_name(actual)}")
    if actual.dtype != expected.dtype:
        _fail(what, f"expected dtype {expected.dtype}, got {actual.dtype}")
    if actual.shape != expected.shape:
        _fail(what, f"expected shape {tuple(expected.shape)}, got {tuple(actual.shape)}")
    if actual.device != expected.device:
        _fail(what, f"expected a tensor on device {expected.device}, got one on {actual.device}")
    if check_requires_grad and actual.requires_grad != expected.requires_grad:
        _fail(what, f"expected requires_grad={expected.requires_grad}, got requires_grad={actual.requires_grad}")
    if actual.device.type == "meta":
        return  # meta tensors have a shape and a dtype but no values
    a, e = actual.detach().cpu(), expected.detach().cpu()
    differ = _count_differences(a, e, rtol, atol)
    if differ:
        _fail(what, _values_message(differ, e.numel(), _first_difference(a, e, rtol, atol), show_expected, rtol, atol))


def _values_message(differ, total, first, show_expected, rtol=0.0, atol=0.0):
    index, got, want = first
    where = f"at index {index}" if index != () else "for the single element"
    message = f"wrong values ({differ} of {total} elements differ from the expected ones); first {where}: got {got!r}"
    if show_expected:
        message += f", expected {want!r}"
    if rtol or atol:
        message += f" (tolerance: atol={atol:g}, rtol={rtol:g})"
    return message


def _first_difference(actual, expected, rtol=0.0, atol=0.0):
    """``(index tuple, actual value, expected value)`` of the first element that differs (tensors)."""
    if expected.is_floating_point() or expected.is_complex():
        bad = ~torch.isclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
    else:
        bad = actual != expected
    flat = int(torch.nonzero(bad.reshape(-1))[0, 0])
    index = tuple(int(i) for i in np.unravel_index(flat, tuple(expected.shape))) if expected.dim() else ()
    return index, actual.reshape(-1)[flat].item(), expected.reshape(-1)[flat].item()


def _count_differences(actual, expected, rtol=0.0, atol=0.0):
    """How many elements differ (same dtype and shape assumed); NaN equals NaN.

    Same rule as ``torch.testing.assert_close(..., equal_nan=True)``, written out because the
    first ``assert_close`` call in a process imports ``torch.distributed`` (about 3.5 s per kernel).
    """
    if expected.is_floating_point() or expected.is_complex():
        close = torch.isclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
        return int((~close).sum())
    return int((actual != expected).sum())


def check_ndarray(actual, expected, what="result", *, show_expected=False):
    """Fail unless ``actual`` is a ``numpy.ndarray`` with the dtype, shape and values of ``expected``.

    Values are compared exactly (NaN equals NaN); the message names the first differing element,
    with its expected value too when ``show_expected`` (visible checks).

    Raises:
        AssertionError: naming the first property that differs.
    """
    if type(actual) is not np.ndarray:
        _fail(what, f"expected a numpy.ndarray, got {_type_name(actual)}")
    if actual.dtype != expected.dtype:
        _fail(what, f"expected dtype {expected.dtype}, got {actual.dtype}")
    if actual.shape != expected.shape:
        _fail(what, f"expected shape {expected.shape}, got {actual.shape}")
    equal_nan = expected.dtype.kind in "fc"
    if not np.array_equal(actual, expected, equal_nan=equal_nan):
        bad = ~((actual == expected) | (equal_nan & (actual != actual) & (expected != expected)))
        bad = np.asarray(bad).reshape(-1)
        flat = int(np.flatnonzero(bad)[0])
        index = tuple(int(i) for i in np.unravel_index(flat, expected.shape)) if expected.ndim else ()
        first = (index, actual.reshape(-1)[flat].item(), expected.reshape(-1)[flat].item())
        _fail(what, _values_message(int(bad.sum()), expected.size, first, show_expected))


def check_value(actual, expected, what="result", *, show_expected=False):
    """Fail unless ``actual`` has exactly the type of ``expected`` and equals it.

    Meant for Python scalars, tuples, strings, ``torch.dtype``, ``torch.Size``
    and ``torch.device`` values. ``True`` does not pass for ``1`` (different
    types), and floats are compared exactly, except that NaN equals NaN. A ``numpy.bool``
    passes for a ``bool`` (``from numpy import *`` makes ``bool`` NumPy's). ``show_expected``
    (visible checks) adds the expected value to the message.

    Raises:
        AssertionError: if the type or the value differs.
    """
    if type(expected) is bool and type(actual) is np.bool_:
        actual = bool(actual)  # with `from numpy import *` in the notebook, `bool(...)` is NumPy's bool
    if type(actual) is not type(expected):
        _fail(what, f"expected type {_type_name(expected)}, got {_type_name(actual)}")
    if isinstance(expected, float) and math.isnan(expected):
        if not math.isnan(actual):
            _fail(what, f"wrong value: got {actual!r}" + (", expected nan" if show_expected else ""))
        return
    if isinstance(expected, (tuple, list)):
        if len(actual) != len(expected):
            _fail(what, f"expected {len(expected)} items, got {len(actual)}")
        for i, (a, e) in enumerate(zip(actual, expected)):
            check_value(a, e, f"{what}[{i}]", show_expected=show_expected)
        return
    if not bool(actual == expected):
        _fail(what, f"wrong value: got {actual!r}" + (f", expected {expected!r}" if show_expected else ""))


def check_dtype(actual, expected, what="result"):
    """Fail unless ``actual`` is the ``torch.dtype`` ``expected``.

    Raises:
        AssertionError: if ``actual`` is not a ``torch.dtype`` or is another dtype.
    """
    if type(actual) is not torch.dtype:
        _fail(what, f"expected a torch.dtype, got {_type_name(actual)}")
    if actual != expected:
        _fail(what, f"expected dtype {expected}, got {actual}")


def _data_address(obj):
    """The address of the first byte of ``obj``'s underlying storage (tensor or ndarray)."""
    if isinstance(obj, torch.Tensor):
        return obj.untyped_storage().data_ptr()
    if isinstance(obj, np.ndarray):
        base = obj
        while isinstance(base.base, np.ndarray):
            base = base.base
        return base.__array_interface__["data"][0]
    raise TypeError(f"not a tensor or ndarray: {type(obj).__name__}")


def _shares(a, b):
    # NumPy has no bfloat16; a same-size integer view of the same bytes answers the same question.
    a = a.view(torch.int16) if isinstance(a, torch.Tensor) and a.dtype == torch.bfloat16 else a
    b = b.view(torch.int16) if isinstance(b, torch.Tensor) and b.dtype == torch.bfloat16 else b
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(np.shares_memory(a, b))
    if isinstance(a, torch.Tensor) and a.device.type != "cpu":
        return isinstance(b, torch.Tensor) and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    if isinstance(b, torch.Tensor) and b.device.type != "cpu":
        return False
    # CPU tensors and ndarrays: compare the byte ranges they cover.
    a_np = a.detach().numpy() if isinstance(a, torch.Tensor) else a
    b_np = b.detach().numpy() if isinstance(b, torch.Tensor) else b
    return bool(np.shares_memory(a_np, b_np))


def check_shares_memory(actual, original, what="result", *, expected=True):
    """Fail unless ``actual`` shares memory with ``original`` (or, with ``expected=False``, does not).

    Works for any mix of ``torch.Tensor`` and ``numpy.ndarray``. Sharing means
    that writing through one object changes the other, as ``torch.from_numpy``
    and ``Tensor.numpy()`` do on the CPU
    (https://pytorch.org/docs/stable/generated/torch.from_numpy.html).

    Raises:
        AssertionError: if the memory relation is not the expected one.
    """
    if not isinstance(actual, (torch.Tensor, np.ndarray)):
        _fail(what, f"expected a tensor or an ndarray, got {_type_name(actual)}")
    shares = _shares(actual, original)
    if expected and not shares:
        _fail(what, "expected to share memory with the input, but it is a copy")
    if not expected and shares:
        _fail(what, "expected an independent copy, but it shares memory with the input")


class _ModuleSnapshot:
    """Parameters and buffers (values, dtype, device, requires_grad) and the training flag of a module."""

    def __init__(self, module):
        self.type = type(module)
        self.training = module.training
        self.params = {name: snapshot(p) for name, p in module.named_parameters()}
        self.buffers = {name: snapshot(b) for name, b in module.named_buffers()}


class _ListSnapshot:
    """The items of a list (by identity) and a snapshot of each tensor among them."""

    def __init__(self, items):
        self.items = list(items)
        self.snaps = [snapshot(x) if isinstance(x, (torch.Tensor, np.ndarray)) else None for x in items]


def snapshot(obj):
    """A deep copy of an input, to compare with later in :func:`check_unchanged`.

    ``obj``: a tensor (the copy keeps its dtype, device and ``requires_grad``), an ndarray,
    a ``torch.nn.Module`` (every parameter and buffer, and the training flag) or a list
    (its items by identity, and a copy of each tensor or array in it).
    """
    if isinstance(obj, torch.Tensor):
        copy = obj.detach().clone()
        if obj.requires_grad:
            copy.requires_grad_(True)
        return copy
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, torch.nn.Module):
        return _ModuleSnapshot(obj)
    if isinstance(obj, list):
        return _ListSnapshot(obj)
    raise TypeError(f"not a tensor, ndarray, module or list: {type(obj).__name__}")


def check_unchanged(current, before, what="the input"):
    """Fail if ``current`` (an input the student's function received) differs from its ``snapshot``.

    For a tensor: dtype, shape, device, ``requires_grad`` and values. For a module: every parameter
    and buffer (the same way), none added or removed, and the training flag. For a list: the same
    items in the same order, each tensor or array among them unchanged.

    Raises:
        AssertionError: "<what> was modified ...", naming what changed.
    """
    if isinstance(before, _ModuleSnapshot):
        _check_module_unchanged(current, before, what)
        return
    if isinstance(before, _ListSnapshot):
        if type(current) is not list or len(current) != len(before.items) or any(
            a is not b for a, b in zip(current, before.items)
        ):
            _fail(what, "was modified (its items were replaced, added or removed); the function must not change its input")
        for i, (item, snap) in enumerate(zip(current, before.snaps)):
            if snap is not None:
                check_unchanged(item, snap, f"{what}[{i}]")
        return
    if isinstance(before, torch.Tensor):
        if not isinstance(current, torch.Tensor):
            _fail(what, "was modified; the function must not change its input")
        if current.requires_grad != before.requires_grad:
            _fail(what, f"was modified (requires_grad changed from {before.requires_grad} to {current.requires_grad}); "
                        "the function must not change its input")
        if current.device != before.device or current.dtype != before.dtype:
            _fail(what, "was modified (its dtype or device changed); the function must not change its input")
        same = _same_tensor(current.detach(), before.detach())
    else:
        same = (
            isinstance(current, np.ndarray)
            and current.dtype == before.dtype
            and current.shape == before.shape
            and np.array_equal(current, before, equal_nan=before.dtype.kind in "fc")
        )
    if not same:
        _fail(what, "was modified; the function must not change its input")


def _check_module_unchanged(module, before, what):
    if type(module) is not before.type:
        _fail(what, "was replaced by another kind of object; the function must not change its input")
    if module.training != before.training:
        _fail(what, f"was modified (switched to {'training' if module.training else 'eval'} mode); "
                    "the function must not change its input")
    for kind, now, then in (("parameter", dict(module.named_parameters()), before.params),
                            ("buffer", dict(module.named_buffers()), before.buffers)):
        if set(now) != set(then):
            _fail(what, f"was modified (its {kind}s changed: {sorted(now)} instead of {sorted(then)}); "
                        "the function must not change its input")
        for name in then:
            check_unchanged(now[name], then[name], f"{what}.{name}")


def _same_tensor(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.device == b.device and (
        a.device.type == "meta" or _count_differences(a.cpu(), b.cpu()) == 0
    )


def check_new_object(actual, original, what="result"):
    """Fail if ``actual`` is the very object ``original`` (the function was asked for a new one).

    Identity is checked even when nothing had to change (an empty list, a tensor already filled),
    where returning the input would otherwise look right.

    Raises:
        AssertionError: if ``actual is original``.
    """
    if actual is original:
        _fail(what, "expected a new object, but the function returned its input itself")


# --- inputs with other memory layouts ------------------------------------------------------------

LAYOUTS = ("contiguous", "transposed", "permuted", "strided", "expanded")


def layout(x, kind):
    """A tensor or ndarray with the values and shape of ``x`` but the memory layout ``kind``.

    ``kind`` is one of :data:`LAYOUTS`:

    - ``"contiguous"``: a plain copy;
    - ``"transposed"``: the last two dimensions swapped in memory (x must have 2+ dimensions);
    - ``"permuted"``: all dimensions reversed in memory (x must have 2+ dimensions);
    - ``"strided"``: every other element of a larger block along the last dimension (1+ dimensions);
    - ``"expanded"``: a broadcast view of the first entry along dimension 0 (stride 0), so all
      rows are equal; the values are those of ``x[:1]`` repeated (1+ dimensions; read-only for NumPy).

    Each view is made with explicit operations (no global state), on ``x``'s device.
    """
    if kind == "contiguous":
        return snapshot(x) if isinstance(x, np.ndarray) else x.detach().clone()
    is_np = isinstance(x, np.ndarray)
    nd = x.ndim
    if kind in ("transposed", "permuted"):
        if nd < 2:
            raise ValueError(f"a {kind} layout needs 2+ dimensions, got {nd}")
        order = list(range(nd))
        if kind == "transposed":
            order[-1], order[-2] = order[-2], order[-1]
        else:
            order.reverse()
        inverse = [order.index(i) for i in range(nd)]
        if is_np:
            return np.ascontiguousarray(np.transpose(x, order)).transpose(inverse)
        return x.detach().permute(order).contiguous().permute(inverse)
    if nd < 1:
        raise ValueError(f"a {kind} layout needs 1+ dimensions")
    if kind == "strided":
        shape = tuple(x.shape[:-1]) + (2 * x.shape[-1] + 1,)
        if is_np:
            block = np.zeros(shape, dtype=x.dtype)
            block[..., 1::2] = x
            return block[..., 1::2]
        block = torch.zeros(shape, dtype=x.dtype, device=x.device)
        block[..., 1::2] = x.detach()
        return block[..., 1::2]
    if kind == "expanded":
        if is_np:
            return np.broadcast_to(x[:1].copy(), x.shape)
        return x.detach()[:1].clone().expand(x.shape)
    raise ValueError(f"unknown layout {kind!r}; one of {LAYOUTS}")


# --- library state a test needs to set, restored afterwards ----------------------------------------


@contextlib.contextmanager
def simulated_availability(*, cuda, mps):
    """Within the block, ``torch.cuda.is_available()`` returns ``cuda`` and
    ``torch.backends.mps.is_available()`` (and ``torch.mps.is_available()``) return ``mps``.

    Device selection can then be tested for every combination on any machine; only these
    functions are replaced (https://pytorch.org/docs/stable/notes/cuda.html,
    https://pytorch.org/docs/stable/notes/mps.html). The originals are restored on exit.
    """
    targets = [(torch.cuda, "is_available", bool(cuda)), (torch.backends.mps, "is_available", bool(mps))]
    if hasattr(torch, "mps") and hasattr(torch.mps, "is_available"):
        targets.append((torch.mps, "is_available", bool(mps)))
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in targets]
    try:
        for obj, name, value in targets:
            setattr(obj, name, (lambda value=value: value))
        yield
    finally:
        for obj, name, original in saved:
            setattr(obj, name, original)


@contextlib.contextmanager
def default_dtype(dtype):
    """Within the block, ``torch.get_default_dtype()`` is ``dtype``; the previous default comes back after.

    For exercises whose answer the text defines under PyTorch's default float dtype (float32),
    whatever ``torch.set_default_dtype`` a student's cell called.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@contextlib.contextmanager
def unchanged_global_rng(what="the function"):
    """Fail (on leaving the block) if the global random state of torch changed inside it.

    Raises:
        AssertionError: "<what> changed the global random state ...".
    """
    state = torch.random.get_rng_state()
    yield
    if not torch.equal(torch.random.get_rng_state(), state):
        _fail(what, "changed the global random state (torch.random.get_rng_state()); use a generator of your own")


class _DeviceMixWatch(torch.overrides.TorchFunctionMode):
    """Records every operation whose tensor arguments live on more than one device.

    A 0-dim CPU tensor may join any device (PyTorch allows it); the moves themselves (``to``, ``cpu``,
    ``cuda``, ``copy_``) are exempt. Needed because ``meta`` lets a few mixed operations through that a
    GPU would refuse (a CPU matrix times a meta matrix, for instance).
    """

    _EXEMPT = ("to", "cpu", "cuda", "copy_", "__get__", "__set__")

    def __init__(self):
        super().__init__()
        self.mixed = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if name not in self._EXEMPT:
            devices = set()
            for arg in list(args) + list(kwargs.values()):
                for item in (arg if isinstance(arg, (list, tuple)) else [arg]):
                    if isinstance(item, torch.Tensor) and not (item.device.type == "cpu" and item.dim() == 0):
                        devices.add(str(item.device))
            if len(devices) > 1:
                self.mixed.append(f"{name} (on {' and '.join(sorted(devices))})")
        return func(*args, **kwargs)


@contextlib.contextmanager
def one_device_per_operation(what="the function"):
    """Fail (on leaving the block) if an operation inside it got tensors on different devices.

    Raises:
        AssertionError: "<what>: <operation> got tensors on different devices; a GPU would refuse that".
    """
    with _DeviceMixWatch() as watch:
        yield
    if watch.mixed:
        _fail(what, f"{watch.mixed[0]} got tensors on different devices; a GPU would refuse that")
