"""Constraint-aware batch sizing (ExeGPT section 4) with plain numbers: the step-time fit and the
largest batch that keeps the most urgent deadline."""

from __future__ import annotations

import pytest

from streamrt.errors import ConfigError
from streamrt.scheduler import SchedulerSettings, StepTimeModel, choose_batch_size


def fitted(points):
    m = StepTimeModel(window=64)
    for b, t in points:
        m.observe(b, t)
    return m


def test_fit_recovers_a_linear_step_time():
    m = fitted([(b, 0.04 + 0.01 * b) for b in (1, 2, 4, 8, 8, 3)])
    a, c = m.coefficients()
    assert a == pytest.approx(0.04) and c == pytest.approx(0.01)
    assert m.predict(16) == pytest.approx(0.2)


def test_fit_with_one_batch_size_scales_the_whole_time():
    m = fitted([(4, 0.2), (4, 0.2)])
    assert m.coefficients() == (0.0, pytest.approx(0.05))


def test_fit_never_predicts_cheaper_larger_batches():
    m = fitted([(1, 0.3), (8, 0.1)])  # noise: the larger batch happened to be faster
    a, c = m.coefficients()
    assert c == 0 and a == pytest.approx(0.2)


def test_window_forgets_old_steps():
    m = StepTimeModel(window=4)
    for b in (1, 2, 3, 4):
        m.observe(b, 1.0 * b)
    for b in (1, 2, 3, 4):
        m.observe(b, 0.1 * b)
    assert m.predict(10) == pytest.approx(1.0)


def test_unfitted_model_takes_the_largest_batch():
    assert choose_batch_size([1.0] * 10, 0.0, StepTimeModel(), 8) == 8
    assert choose_batch_size([1.0] * 10, 0.0, StepTimeModel(), None) == 10
    assert choose_batch_size([], 0.0, StepTimeModel(), 8) == 0


def test_batch_is_the_largest_that_keeps_the_most_urgent_deadline():
    m = fitted([(b, 0.1 + 0.05 * b) for b in (1, 2, 4, 8)])
    # slack 0.3 s: 0.1 + 0.05*b <= 0.3 -> b = 4
    assert choose_batch_size([0.3, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0], 0.0, m, 32) == 4
    # more slack: capped by the ready count, then by max_batch_size
    assert choose_batch_size([10.0] * 7, 0.0, m, 32) == 7
    assert choose_batch_size([10.0] * 7, 0.0, m, 3) == 3


def test_no_split_that_only_moves_the_lateness_onto_the_rest():
    m = fitted([(b, 0.06 * b) for b in (1, 2, 4, 8)])
    # all ready together: 8 would meet the deadline, but the 2 left out would finish at 0.6 s,
    # past their own 0.5 s: one step of all 10 (late by 0.1 s) beats two (the last late by 0.1 s
    # plus a second fixed cost)
    assert choose_batch_size([0.5] * 10, 0.0, m, 32) == 10
    # the rest has the slack to wait: split
    assert choose_batch_size([0.5] * 8 + [0.7] * 2, 0.0, m, 32) == 8
    m = fitted([(b, 0.1 + 0.05 * b) for b in (1, 2, 4, 8)])
    assert choose_batch_size([0.3] * 7, 0.0, m, 32) == 7


def test_when_behind_throughput_wins():
    m = fitted([(b, 0.1 + 0.05 * b) for b in (1, 2, 4, 8)])
    # the most urgent deadline is already unreachable even alone: take the largest batch
    assert choose_batch_size([0.1, 0.2, 5.0], 0.0, m, 32) == 3


@pytest.mark.parametrize(
    "kw",
    [
        {"max_batch_size": 0},
        {"max_wait_ms": -1},
        {"latency_budget_ms": 0},
        {"step_time_window": 1},
        {"degrade_high_water_ms": 500, "degrade_low_water_ms": 500},
        {"degrade_hold_ms": -1},
    ],
)
def test_bad_settings_are_refused_with_the_number(kw):
    with pytest.raises(ConfigError) as e:
        SchedulerSettings(**kw)
    assert any(str(v) in e.value.message for v in kw.values())
