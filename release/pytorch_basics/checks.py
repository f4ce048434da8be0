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
"""

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
    "snapshot",
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


def check_tensor(actual, expected, what="result", *, rtol=0.0, atol=0.0, check_requires_grad=True):
    """Fail unless ``actual`` is a ``torch.Tensor`` that matches ``expected`` exactly.

    Compared, in this order: exact type, dtype, shape, device, requires_grad
    (when ``check_requires_grad``), then values (NaN equals NaN). ``rtol`` and
    ``atol`` default to 0 (exact); pass tolerances for floating-point results
    that may be computed in a different but correct order.

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
    differ = _count_differences(actual.detach().cpu(), expected.detach().cpu(), rtol, atol)
    if differ:
        _fail(what, f"wrong values ({differ} of {expected.numel()} elements differ from the expected ones)")


def _count_differences(actual, expected, rtol=0.0, atol=0.0):
    """How many elements differ (same dtype and shape assumed); NaN equals NaN.

    Same rule as ``torch.testing.assert_close(..., equal_nan=True)``, written out because the
    first ``assert_close`` call in a process imports ``torch.distributed`` (about 3.5 s per kernel).
    """
    if expected.is_floating_point() or expected.is_complex():
        close = torch.isclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
        return int((~close).sum())
    return int((actual != expected).sum())


def check_ndarray(actual, expected, what="result"):
    """Fail unless ``actual`` is a ``numpy.ndarray`` with the dtype, shape and values of ``expected``.

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
        differ = int(np.sum(~((actual == expected) | (equal_nan & (actual != actual) & (expected != expected)))))
        _fail(what, f"wrong values ({differ} of {expected.size} elements differ from the expected ones)")


def check_value(actual, expected, what="result"):
    """Fail unless ``actual`` has exactly the type of ``expected`` and equals it.

    Meant for Python scalars, tuples, strings, ``torch.dtype``, ``torch.Size``
    and ``torch.device`` values. ``True`` does not pass for ``1`` (different
    types), and floats are compared exactly, except that NaN equals NaN.

    Raises:
        AssertionError: if the type or the value differs.
    """
    if type(actual) is not type(expected):
        _fail(what, f"expected type {_type_name(expected)}, got {_type_name(actual)}")
    if isinstance(expected, float) and math.isnan(expected):
        if not math.isnan(actual):
            _fail(what, "wrong value")
        return
    if isinstance(expected, (tuple, list)):
        if len(actual) != len(expected):
            _fail(what, f"expected {len(expected)} items, got {len(actual)}")
        for i, (a, e) in enumerate(zip(actual, expected)):
            check_value(a, e, f"{what}[{i}]")
        return
    if not bool(actual == expected):
        _fail(what, "wrong value")


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


def snapshot(obj):
    """A deep copy of a tensor or ndarray, to compare with later in :func:`check_unchanged`."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, np.ndarray):
        return obj.copy()
    raise TypeError(f"not a tensor or ndarray: {type(obj).__name__}")


def check_unchanged(current, before, what="the input"):
    """Fail if ``current`` (an input the student's function received) differs from its ``snapshot``.

    Raises:
        AssertionError: "<what> was modified", when dtype, shape or any value changed.
    """
    if isinstance(before, torch.Tensor):
        same = isinstance(current, torch.Tensor) and _same_tensor(current.detach(), before)
    else:
        same = (
            isinstance(current, np.ndarray)
            and current.dtype == before.dtype
            and current.shape == before.shape
            and np.array_equal(current, before, equal_nan=before.dtype.kind in "fc")
        )
    if not same:
        _fail(what, "was modified; the function must not change its input")


def _same_tensor(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.device == b.device and (
        a.device.type == "meta" or _count_differences(a.cpu(), b.cpu()) == 0
    )
