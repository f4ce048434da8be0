"""Property-based layer: hypothesis draws inputs the exercise texts allow (shapes with 0 to 4 dimensions and sizes
of 0, every named dtype, arbitrary positive strides and dimension orders) and checks the instructor solution
against each text's contract. In-process, no kernels: a counterexample here means the hidden tests' fixed
cases are not the whole story.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inprocess import read_source
from torchsteps.authoring.demo_submissions import instructor_answers

_SOLUTIONS: dict = {"np": np, "torch": torch}
for _name in ("01_numpy_and_pytorch", "02_creating_tensors", "03_dtypes_and_casting", "04_devices", "05_common_errors"):
    for _code in instructor_answers(read_source(_name)).values():
        exec(_code, _SOLUTIONS)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INTS = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]
FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
NUMPY_OK = [torch.bool, *INTS, torch.float16, torch.float32, torch.float64]

shapes = st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple)


@st.composite
def tensors(draw, dtypes, shape=shapes, nonempty=False):
    """A CPU tensor of a drawn dtype and shape, seen through a drawn view: every dimension sliced with a step
    of 1 to 3 out of a bigger block, and the dimensions stored in a drawn order (so any positive strides)."""
    dims = draw(shape)
    if nonempty:
        dims = tuple(max(1, d) for d in dims)
    dtype = draw(st.sampled_from(dtypes))
    steps = [draw(st.integers(1, 3)) for _ in dims]
    order = draw(st.permutations(range(len(dims)))) if dims else []
    seed = draw(st.integers(0, 2**32 - 1))
    g = torch.Generator().manual_seed(seed)
    block_shape = [d * s for d, s in zip(dims, steps)]
    stored = torch.randn([block_shape[i] for i in order], generator=g, dtype=torch.float64)
    special = draw(st.sampled_from([None, 16777217.0, 2.0**53 + 2, 1e-300, 0.5, -0.0, math.nan, math.inf]))
    if special is not None and stored.numel():
        stored.view(-1)[seed % stored.numel()] = special
    if dtype == torch.bool:
        stored = stored > 0
    elif not dtype.is_floating_point:
        info = torch.iinfo(dtype)
        stored = torch.nan_to_num(stored * 1000).clamp(info.min, info.max).round().to(dtype)
        if dtype == torch.int64 and stored.numel():
            stored.view(-1)[0] = 2**53 + 1
    else:
        stored = (stored * 100).to(dtype)
    block = stored.permute([order.index(i) for i in range(len(dims))]) if dims else stored
    return block[tuple(slice(None, None, s) for s in steps)]


def _exact_list(t):
    return t.reshape(-1).tolist()


@SETTINGS
@given(t=tensors([torch.float32, torch.float64, torch.int64]))
def test_to_numpy_shared(t):
    a = _SOLUTIONS["to_numpy_shared"](t)
    assert a.shape == tuple(t.shape) and str(a.dtype) == str(t.dtype).removeprefix("torch.")
    assert np.array_equal(a.reshape(-1), np.array(_exact_list(t)), equal_nan=t.is_floating_point())
    if t.numel():
        assert np.shares_memory(a, t.numpy())


@SETTINGS
@given(t=tensors(NUMPY_OK))
def test_to_tensor_copy_and_to_numpy_any_device(t):
    a = t.numpy()
    copy = _SOLUTIONS["to_tensor_copy"](a)
    assert copy.dtype == t.dtype and torch.equal(copy.nan_to_num(0) if t.is_floating_point() else copy,
                                                 t.nan_to_num(0) if t.is_floating_point() else t)
    assert not (copy.numel() and np.shares_memory(copy.numpy(), a))
    back = _SOLUTIONS["to_numpy_any_device"](t)
    assert back.dtype == a.dtype and np.array_equal(back, a, equal_nan=t.is_floating_point())


@SETTINGS
@given(t=tensors([torch.bool, *INTS, *FLOATS]))
def test_to_float32_nonzero_mask(t):
    before = t.clone()
    out = _SOLUTIONS["to_float32"](t)
    assert out.dtype == torch.float32 and out.shape == t.shape
    assert torch.equal(out.nan_to_num(7.0), torch.tensor(_exact_list(t), dtype=torch.float32).reshape(t.shape).nan_to_num(7.0))
    mask = _SOLUTIONS["nonzero_mask"](t)
    assert mask.dtype == torch.bool and _exact_list(mask) == [v != 0 for v in _exact_list(t)]
    assert torch.equal(t.nan_to_num(0) if t.is_floating_point() else t, before.nan_to_num(0) if t.is_floating_point() else before)


@SETTINGS
@given(t=tensors([torch.float32, torch.float64]))
def test_round_to_int(t):
    t = torch.nan_to_num(t, nan=0.5, posinf=2.0**50, neginf=-(2.0**50)).clamp(-(2.0**51), 2.0**51)
    out = _SOLUTIONS["round_to_int"](t)
    assert out.dtype == torch.int64 and _exact_list(out) == [int(np.rint(v)) for v in _exact_list(t)]


@SETTINGS
@given(t=tensors([torch.uint8]), amount=st.integers(-255, 255))
def test_brighten(t, amount):
    out = _SOLUTIONS["brighten"](t, amount)
    assert out.dtype == torch.uint8 and _exact_list(out) == [min(255, max(0, v + amount)) for v in _exact_list(t)]


@SETTINGS
@given(t=tensors(INTS, nonempty=True))
def test_mean_as_float(t):
    values = _exact_list(t)
    out = _SOLUTIONS["mean_as_float"](t)
    assert out.dtype == torch.float32 and out.shape == ()
    assert abs(out.item() - sum(values) / len(values)) <= 1e-6 * (1 + max(abs(v) for v in values))


@SETTINGS
@given(t=tensors([torch.bool, *INTS, *FLOATS]), value=st.integers(0, 1))
def test_filled_like_and_shape_info(t, value):
    value = bool(value) if t.dtype == torch.bool else value
    out = _SOLUTIONS["filled_like"](t, value)
    assert out is not t and out.dtype == t.dtype and out.shape == t.shape and bool((out == value).all())
    shape, ndim, numel = _SOLUTIONS["shape_info"](t)
    assert (type(shape), type(ndim), type(numel)) == (torch.Size, int, int)
    assert (shape, ndim, numel) == (t.shape, len(t.shape), math.prod(t.shape))


@SETTINGS
@given(a=tensors([torch.bool, *INTS, *FLOATS], shape=st.just((3,))),
       b=st.one_of(tensors([torch.bool, *INTS, *FLOATS], shape=st.sampled_from([(), (1,), (3,)])),
                   st.sampled_from([True, 3, -2, 2.5])))
def test_sum_dtype(a, b):
    assert _SOLUTIONS["sum_dtype"](a, b) == torch.add(a, b).dtype


@SETTINGS
@given(x=tensors([*INTS[1:], torch.float32, torch.float64], nonempty=True), low=st.integers(-200, 0), high=st.integers(0, 200))
def test_all_in_range(x, low, high):
    if not x.is_floating_point():  # the text keeps integer bounds inside the dtype's range (PyTorch wraps them)
        info = torch.iinfo(x.dtype)
        low, high = max(low, info.min), min(high, info.max)
    got = _SOLUTIONS["all_in_range"](x, low, high)
    assert type(got) is bool and got == all(low <= v <= high for v in _exact_list(x))


@SETTINGS
@given(counts=tensors(INTS), factor=st.floats(1e-3, 1e3))
def test_scale_counts(counts, factor):
    out = _SOLUTIONS["scale_counts"](counts, factor)
    exact = [v * factor for v in _exact_list(counts)]
    assert out.dtype == torch.float32
    assert all(abs(o - e) <= 1e-6 + 1e-6 * abs(e) for o, e in zip(_exact_list(out), exact))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(data=st.data())
def test_standardize_columns(dtype, data):
    n, m = data.draw(st.integers(2, 6)), data.draw(st.integers(1, 5))
    values = data.draw(st.lists(st.floats(-100, 100), min_size=n * m, max_size=n * m))
    a = np.array(values, dtype=dtype).reshape(n, m)
    if data.draw(st.booleans()):
        a = np.ascontiguousarray(a.T).T
    sd = a.astype(np.float64).std(axis=0)
    if (sd < 1e-2 * (1 + np.abs(a).max(axis=0))).any():
        return  # (nearly) constant columns are outside the text
    out = _SOLUTIONS["standardize_columns"](a)
    exact = (a.astype(np.float64) - a.astype(np.float64).mean(axis=0)) / sd
    tol = 1e-3 if dtype is np.float32 else 1e-10
    assert out.dtype == torch.from_numpy(a).dtype and np.allclose(out.numpy(), exact, rtol=tol, atol=tol)
