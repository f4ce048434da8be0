"""Fast tier: the global state read around each call of a student's function (crossing.global_state).

A reading is taken twice per call on each side of the boundary, so it reuses the previous reading when the
generators' memory is unchanged. These tests check that every change a call can make is still seen, that
an unchanged state is reused rather than rebuilt, and that the memory fingerprints agree with the libraries.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from torchsteps.sandbox import crossing


@pytest.fixture(autouse=True)
def restored_state():
    saved = (torch.random.get_rng_state(), np.random.get_state(), random.getstate(), torch.is_grad_enabled(),
             torch.get_default_dtype())
    yield
    torch.random.set_rng_state(saved[0])
    np.random.set_state(saved[1])
    random.setstate(saved[2])
    torch.set_grad_enabled(saved[3])
    torch.set_default_dtype(saved[4])


def _spare_numpy_normal():
    """Leave NumPy's legacy generator holding a spare normal sample (has_gauss = 1)."""
    np.random.seed(7)
    np.random.standard_normal()
    assert np.random.get_state()[3] == 1


def _spare_python_normal():
    random.seed(7)
    random.gauss(0.0, 1.0)
    assert random.getstate()[2] is not None


CHANGES = {
    "torch draw": (None, lambda: torch.rand(1), {"torch_rng"}),
    "torch seed": (None, lambda: torch.manual_seed(123), {"torch_rng"}),
    "numpy draw": (None, lambda: np.random.rand(), {"numpy_rng"}),
    "numpy seed": (None, lambda: np.random.seed(5), {"numpy_rng"}),
    # The spare sample is used without advancing the MT19937 state: only has_gauss changes.
    "numpy spare normal used": (_spare_numpy_normal, lambda: np.random.standard_normal(), {"numpy_rng"}),
    "numpy normal drawn": (None, lambda: np.random.standard_normal(), {"numpy_rng"}),
    "python draw": (None, lambda: random.random(), {"python_rng"}),
    "python seed": (None, lambda: random.seed(9), {"python_rng"}),
    # random.gauss keeps its spare in gauss_next, outside the MT19937 state, the same way.
    "python spare normal used": (_spare_python_normal, lambda: random.gauss(0.0, 1.0), {"python_rng"}),
    "grad mode": (None, lambda: torch.set_grad_enabled(False), {"grad"}),
    "default dtype": (None, lambda: torch.set_default_dtype(torch.float64), {"default_dtype"}),
    "all generators": (None, lambda: (torch.rand(1), np.random.rand(), random.random()),
                       {"torch_rng", "numpy_rng", "python_rng"}),
}


@pytest.mark.parametrize("name", CHANGES)
def test_each_change_a_call_can_make_is_seen(name):
    setup, change, keys = CHANGES[name]
    if setup is not None:
        setup()
    before = crossing.global_state()
    before = crossing.global_state(before)  # a reading that reuses entries, as between two calls
    change()
    after = crossing.global_state(before)
    changed = crossing.changed_state(before, after)
    assert set(changed) == keys
    # What crosses is the state the library reports now.
    if "numpy_rng" in keys:
        name_, keys_, pos, has_gauss, gauss = changed["numpy_rng"]
        now = np.random.get_state()
        assert (name_, pos, has_gauss, gauss) == (now[0], now[2], now[3], now[4])
        assert np.array_equal(keys_.numpy().astype(np.uint32), now[1])
    if "python_rng" in keys:
        version, internal, gauss = changed["python_rng"]
        assert (version, tuple(internal.tolist()), gauss) == random.getstate()
    if "torch_rng" in keys:
        assert torch.equal(changed["torch_rng"], torch.random.get_rng_state())


def test_the_spare_normal_cases_leave_the_mt_state_unchanged():
    """The two spare-sample cases above test what they claim: the MT19937 words do not move."""
    _spare_numpy_normal()
    keys = np.random.get_state()[1].copy()
    np.random.standard_normal()
    assert np.array_equal(np.random.get_state()[1], keys) and np.random.get_state()[3] == 0
    _spare_python_normal()
    words = random.getstate()[1]
    random.gauss(0.0, 1.0)
    assert random.getstate()[1] == words and random.getstate()[2] is None


def test_an_unchanged_state_is_reused_not_rebuilt():
    np.random.seed(1)  # no spare normal kept
    random.seed(1)
    first = crossing.global_state()
    second = crossing.global_state(first)
    assert second["numpy_rng"] is first["numpy_rng"]
    assert second["python_rng"] is first["python_rng"]
    assert crossing.changed_state(first, second) == {}


def test_a_kept_numpy_spare_is_always_read_in_full():
    _spare_numpy_normal()
    first = crossing.global_state()
    second = crossing.global_state(first)
    assert second["numpy_rng"] is not first["numpy_rng"]  # has_gauss = 1: only the full state can tell
    assert crossing.changed_state(first, second) == {}


def test_the_memory_fingerprints_agree_with_the_libraries():
    for _ in range(3):
        np.random.rand()
        random.random()
        reading = crossing.global_state()
        assert reading["numpy_rng"].fingerprint[0] == crossing._numpy_expected(np.random.get_state())
        assert reading["python_rng"].fingerprint[0] == crossing._python_expected(random.getstate())
    assert crossing._NUMPY_MEMORY.usable and crossing._PYTHON_MEMORY.usable


def test_a_fingerprint_that_disagrees_is_turned_off_and_full_readings_take_over(monkeypatch):
    wrong = lambda state: b"not the layout"  # noqa: E731
    monkeypatch.setattr(crossing, "_NUMPY_MEMORY", crossing._MemoryFingerprint(crossing._numpy_address, wrong))
    monkeypatch.setattr(crossing, "_PYTHON_MEMORY", crossing._MemoryFingerprint(crossing._python_address, wrong))
    first = crossing.global_state()
    assert not crossing._NUMPY_MEMORY.usable and not crossing._PYTHON_MEMORY.usable
    np.random.rand()
    random.random()
    second = crossing.global_state(first)
    assert set(crossing.changed_state(first, second)) == {"numpy_rng", "python_rng"}
    assert crossing.changed_state(second, crossing.global_state(second)) == {}


def test_another_numpy_bit_generator_is_read_in_full(monkeypatch):
    """np.random.set_bit_generator(PCG64()) leaves no MT19937 to fingerprint: no memory is read."""
    generator = np.random.RandomState(np.random.PCG64(3))
    assert crossing._numpy_address(generator) is None
    assert crossing._NUMPY_MEMORY.read(generator) is None
