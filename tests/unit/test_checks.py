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


def test_a_failed_value_check_names_the_first_differing_element_and_only_shows_expected_when_asked():
    got, want = torch.tensor([[1.0, 2.0], [3.0, 5.0]]), torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    fails_with(checks.check_tensor, got, want, "f(x)", match=r"1 of 4 .*first at index \(1, 1\): got 5\.0$")
    fails_with(checks.check_tensor, got, want, "f(x)", show_expected=True, match=r"got 5\.0, expected 4\.0")
    fails_with(checks.check_tensor, torch.tensor(2), torch.tensor(3), match="for the single element: got 2$")
    fails_with(checks.check_tensor, torch.tensor([1.1]), torch.tensor([1.0]), rtol=0.0, atol=1e-3,
               match=r"tolerance: atol=0\.001")
    fails_with(checks.check_ndarray, np.array([[0, 7]]), np.array([[0, 6]]), show_expected=True,
               match=r"first at index \(0, 1\): got 7, expected 6")
    fails_with(checks.check_value, 2, 3, show_expected=True, match="got 2, expected 3")
    fails_with(checks.check_value, 2, 3, match="got 2$")


def test_check_value_takes_a_numpy_bool_for_a_bool_but_not_for_an_int():
    checks.check_value(np.bool_(True), True)
    fails_with(checks.check_value, np.bool_(True), False, match="wrong value")
    fails_with(checks.check_value, np.bool_(True), 1, match="expected type int")


@pytest.mark.parametrize("kind", checks.LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.bfloat16, torch.bool])
def test_layout_gives_the_kind_of_view_asked_for_with_the_dtype_kept_under_any_default_dtype(kind, dtype):
    x = (torch.arange(24, dtype=torch.float64).reshape(2, 3, 4) % 5).to(dtype)
    torch.set_default_dtype(torch.float64)
    try:
        view = checks.layout(x, kind)
    finally:
        torch.set_default_dtype(torch.float32)
    assert view.dtype == dtype and view.shape == x.shape
    if kind == "expanded":
        assert view.stride(0) == 0 and torch.equal(view, x[:1].expand(x.shape))
    else:
        assert torch.equal(view, x)
        assert view.is_contiguous() == (kind == "contiguous")
    a = checks.layout(x.to(torch.int64).numpy(), kind)
    assert a.shape == tuple(x.shape) and a.flags.c_contiguous == (kind == "contiguous")


def test_check_shares_memory_handles_bfloat16_and_expanded_views():
    t = torch.zeros(3, 4, dtype=torch.bfloat16)
    checks.check_shares_memory(t.T, t)
    checks.check_shares_memory(t.clone(), t, expected=False)
    e = torch.zeros(1, 3).expand(4, 3)
    checks.check_shares_memory(e.numpy(), e)


def test_check_unchanged_sees_requires_grad_device_and_dtype():
    w = torch.ones(3, requires_grad=True)
    before = checks.snapshot(w)
    assert before.requires_grad and before is not w
    checks.check_unchanged(w, before, "w")
    w.requires_grad_(False)
    fails_with(checks.check_unchanged, w, before, "w", match=r"requires_grad changed from True to False")
    t = torch.ones(2)
    before = checks.snapshot(t)
    fails_with(checks.check_unchanged, t.to("meta"), before, match="dtype or device")


def test_module_snapshot_covers_every_parameter_buffer_and_the_mode():
    layer = torch.nn.BatchNorm1d(3)
    before = checks.snapshot(layer)
    checks.check_unchanged(layer, before, "layer")
    layer.bias.requires_grad_(False)
    fails_with(checks.check_unchanged, layer, before, "layer", match=r"layer\.bias: was modified \(requires_grad")
    layer = torch.nn.BatchNorm1d(3)
    before = checks.snapshot(layer)
    layer.running_mean += 1
    fails_with(checks.check_unchanged, layer, before, "layer", match=r"layer\.running_mean: was modified")
    layer = torch.nn.BatchNorm1d(3)
    before = checks.snapshot(layer)
    layer.eval()
    fails_with(checks.check_unchanged, layer, before, "layer", match="eval mode")


def test_list_snapshot_and_check_new_object():
    a, b = torch.ones(2), torch.zeros(3)
    items = [a, b]
    before = checks.snapshot(items)
    checks.check_unchanged(items, before, "xs")
    items[0] = a.clone()
    fails_with(checks.check_unchanged, items, before, "xs", match="replaced")
    items[0] = a
    b.add_(1)
    fails_with(checks.check_unchanged, items, before, "xs", match=r"xs\[1\]: was modified")
    empty = []
    fails_with(checks.check_new_object, empty, empty, "f(xs)", match="returned its input itself")
    checks.check_new_object([], empty)


def test_simulated_availability_and_default_dtype_restore_what_was_there():
    real_cuda, real_mps = torch.cuda.is_available, torch.backends.mps.is_available
    with checks.simulated_availability(cuda=True, mps=False):
        assert torch.cuda.is_available() is True and torch.backends.mps.is_available() is False
        assert torch.mps.is_available() is False
    assert torch.cuda.is_available is real_cuda and torch.backends.mps.is_available is real_mps
    with pytest.raises(ZeroDivisionError), checks.simulated_availability(cuda=False, mps=True):
        1 / 0
    assert torch.cuda.is_available is real_cuda
    torch.set_default_dtype(torch.float64)
    try:
        with checks.default_dtype(torch.float32):
            assert torch.tensor(1.5).dtype == torch.float32
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)


def test_unchanged_global_rng_and_one_device_per_operation():
    with checks.unchanged_global_rng("f"):
        torch.randn(3, generator=torch.Generator().manual_seed(1))
    with pytest.raises(AssertionError, match="f: changed the global random state"):
        with checks.unchanged_global_rng("f"):
            torch.randn(3)
    with checks.one_device_per_operation("f"):
        torch.ones(2, device="meta") + torch.tensor(1.0)   # a 0-dim CPU tensor may join
    with pytest.raises(AssertionError, match=r"f: matmul \(on cpu and meta\)"):
        with checks.one_device_per_operation("f"):
            torch.ones(2, 2) @ torch.ones(2, 2, device="meta")
