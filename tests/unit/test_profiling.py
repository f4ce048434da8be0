"""The profiling report's phases (torchsteps.authoring.profiling): what is counted where."""

import time

import pytest

from torchsteps.authoring.profiling import PHASES, PhaseTimer, instrument, phase_table


def test_test_cells_are_not_counted_as_bookkeeping():
    # Regression: the grader process's test cells were outside every timed phase, so their time (half of
    # a notebook's) was reported as "nbgrader bookkeeping".
    raw = {"autograde (all)": 10.0, "kernel start": 2.0, "warm parent start": 1.5, "cell execution": 1.0,
           "test cells": 4.0, "grader parent start": 1.0, "kernel shutdown": 0.5, "database": 0.5}
    table = phase_table(raw)
    assert table["nbgrader bookkeeping"] == pytest.approx(10.0 - 2.0 - 1.0 - 4.0 - 0.5 - 0.5)
    assert table["test cells"] == pytest.approx(3.0)  # the grader parent's start is counted apart
    assert table["kernel start"] == pytest.approx(0.5)  # so is the warm parent's
    assert set(table) == set(PHASES)


def test_every_phase_inside_autograde_adds_up_to_autograde():
    raw = {"autograde (all)": 7.0, "kernel start": 1.0, "warm parent start": 0.25, "cell execution": 2.0,
           "test cells": 1.5, "grader parent start": 0.5, "kernel shutdown": 0.25, "database": 0.75}
    table = phase_table(raw)
    inside = ("warm parent start", "grader parent start", "kernel start", "cell execution", "test cells",
              "kernel shutdown", "database", "nbgrader bookkeeping")
    assert sum(table[p] for p in inside) == pytest.approx(raw["autograde (all)"])


def test_instrument_times_the_grader_and_undo_restores_the_methods():
    from torchsteps.nbgrader_plugins.trusted_execute import TrustedExecute
    from torchsteps.sandbox.grader_process import GraderParent

    originals = (TrustedExecute.__dict__["_run_test"], TrustedExecute.__dict__["_run_setup"],
                 GraderParent.__dict__["__init__"])
    timer = PhaseTimer()
    instrument(timer)
    try:
        assert TrustedExecute.__dict__["_run_test"] is not originals[0]
        assert TrustedExecute.__dict__["_run_setup"] is not originals[1]
        assert GraderParent.__dict__["__init__"] is not originals[2]
    finally:
        timer.undo()
    assert (TrustedExecute.__dict__["_run_test"], TrustedExecute.__dict__["_run_setup"],
            GraderParent.__dict__["__init__"]) == originals


def test_phase_timer_times_a_wrapped_method():
    class Worker:
        def work(self):
            time.sleep(0.02)
            return 42

    timer = PhaseTimer()
    timer.wrap(Worker, "work", "test cells")
    try:
        assert Worker().work() == 42
    finally:
        timer.undo()
    assert timer.calls["test cells"] == 1
    assert timer.seconds["test cells"] >= 0.02
    assert timer.active == []


@pytest.mark.parametrize("module", ["bench", "profiling"])
def test_without_bubblewrap_the_timing_tools_stop_with_the_reason(module, monkeypatch, tmp_path, capsys):
    # Regression: without bwrap every kernel failed to start and the benchmark printed timings of errors.
    import importlib
    import tempfile

    from torchsteps.sandbox import kernel_manager

    tool = importlib.import_module(f"torchsteps.authoring.{module}")
    monkeypatch.setattr(kernel_manager, "_sandbox_checked", False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap, prlimit or setpriv on it

    def no_work(*_a, **_k):
        raise AssertionError("a course was generated although grading cannot start")

    monkeypatch.setattr(tempfile, "mkdtemp", no_work)
    assert tool.main(["--students", "1"]) == 2
    err = capsys.readouterr().err
    assert "missing bwrap" in err and "Install bubblewrap" in err
