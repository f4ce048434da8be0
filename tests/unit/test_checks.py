"""Unit tests of the assertions the test cells use (source/pytorch_basics/checks.py)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ASSIGNMENT, REPO

sys.path.insert(0, str(REPO / "source" / ASSIGNMENT))
import checks  # noqa: E402

DTYPES = [torch.float32, torch.float64, torch.int64, torch.int32, torch.uint8, torch.bool]
shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)


def fails_with(fn, *args, match, **kwargs):
    with pytest.raises(AssertionError, match=match):
        fn(*args, **kwargs)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31 - 1))
def test_check_tensor_accepts_an_identical_tensor_and_names_each_difference(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    t = (torch.rand(shape, generator=g) * 100).to(dtype)
    checks.check_tensor(t.clone(), t, "f(x)")
    other = torch.float32 if dtype != torch.float32 else torch.int64
    fails_with(checks.check_tensor, t.to(other), t, "f(x)", match=rf"f\(x\): expected dtype {dtype}, got {other}")
    fails_with(checks.check_tensor, t.unsqueeze(0), t, "f(x)", match="expected shape")
    fails_with(checks.check_tensor, t.tolist(), t, match="expected a torch.Tensor, got (list|float|int|bool)")
    fails_with(checks.check_tensor, t.numpy(), t, match="expected a torch.Tensor, got numpy.ndarray")
    if t.numel():
        changed = t.clone()
        changed.view(-1)[0] = (~changed.view(-1)[0]) if dtype == torch.bool else changed.view(-1)[0] + 1
        fails_with(checks.check_tensor, changed, t, match="1 of")


def test_check_tensor_rejects_subclasses_and_wrong_device_and_grad():
    class Fake(torch.Tensor):
        def __eq__(self, other):
            return True

    t = torch.arange(3.0)
    fails_with(checks.check_tensor, t.as_subclass(Fake), t, match="expected a torch.Tensor, got .*Fake")
    fails_with(checks.check_tensor, t.to("meta"), t, match="device")
    fails_with(checks.check_tensor, t.clone().requires_grad_(), t, match="requires_grad")
    checks.check_tensor(torch.tensor([float("nan")]), torch.tensor([float("nan")]))
    checks.check_tensor(torch.tensor([1.0 + 1e-7]), torch.tensor([1.0]), rtol=1e-5, atol=1e-6)
    fails_with(checks.check_tensor, torch.tensor([1.0 + 1e-7]), torch.tensor([1.0]), match="wrong values")


def test_check_ndarray():
    a = np.arange(6.0).reshape(2, 3)
    checks.check_ndarray(a.copy(), a)
    fails_with(checks.check_ndarray, a.astype(np.float32), a, match="expected dtype float64, got float32")
    fails_with(checks.check_ndarray, a.T, a, match=r"expected shape \(2, 3\), got \(3, 2\)")
    fails_with(checks.check_ndarray, torch.from_numpy(a), a, match="expected a numpy.ndarray, got torch.Tensor")
    fails_with(checks.check_ndarray, a + 1, a, match="6 of 6")
    nan = np.array([np.nan, 1.0])
    checks.check_ndarray(nan.copy(), nan)


def test_check_value_is_type_exact():
    checks.check_value(3, 3)
    checks.check_value(torch.Size([2, 3]), torch.Size([2, 3]))
    checks.check_value(float("nan"), float("nan"))
    fails_with(checks.check_value, True, 1, match="expected type int, got bool")
    fails_with(checks.check_value, (2, 3), torch.Size([2, 3]), match="expected type torch.Size, got tuple")
    fails_with(checks.check_value, (2, 4), (2, 3), match=r"\[1\]: wrong value")
    fails_with(checks.check_value, 2.0, 2, match="expected type int, got float")


def test_check_dtype():
    checks.check_dtype(torch.float32, torch.float32)
    fails_with(checks.check_dtype, "torch.float32", torch.float32, match="expected a torch.dtype, got str")
    fails_with(checks.check_dtype, torch.float64, torch.float32, match="expected dtype torch.float32, got torch.float64")


@pytest.mark.parametrize(
    "make, shares",
    [
        (lambda a: torch.from_numpy(a), True),
        (lambda a: torch.as_tensor(a), True),
        (lambda a: torch.from_numpy(a)[1:], True),
        (lambda a: torch.tensor(a), False),
        (lambda a: torch.from_numpy(a.copy()), False),
        (lambda a: torch.as_tensor(a, dtype=torch.float32), False),
    ],
)
def test_check_shares_memory_between_ndarray_and_tensor(make, shares):
    a = np.arange(4.0)
    t = make(a)
    checks.check_shares_memory(t, a, expected=shares)
    fails_with(checks.check_shares_memory, t, a, expected=not shares, match="share" if shares else "copy")


def test_check_shares_memory_tensor_to_tensor_and_back():
    t = torch.arange(4.0)
    checks.check_shares_memory(t.numpy(), t)
    checks.check_shares_memory(t.view(2, 2), t)
    checks.check_shares_memory(t.clone(), t, expected=False)
    fails_with(checks.check_shares_memory, [1.0], t, match="expected a tensor or an ndarray")


def test_snapshot_and_check_unchanged():
    t = torch.tensor([1.0, float("nan")])
    before = checks.snapshot(t)
    checks.check_unchanged(t, before, "x")
    t.add_(1)
    fails_with(checks.check_unchanged, t, before, "x", match="x: was modified")
    a = np.arange(3)
    before = checks.snapshot(a)
    a[0] = 9
    fails_with(checks.check_unchanged, a, before, match="was modified")
    i = torch.arange(3)
    before = checks.snapshot(i)
    fails_with(checks.check_unchanged, i.float(), before, match="was modified")
