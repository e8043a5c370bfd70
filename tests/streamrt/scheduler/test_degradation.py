"""The degradation ladder: built from the knobs a model offers, moved with hysteresis, and, end to
end in virtual time, turned on under overload (bounding lag) and off again when load falls."""

from __future__ import annotations

import pytest
from sched_helpers import Recorder, TimedCountingModel, advance_to, chunk, words_for
from streamrt.clock import ManualClock
from streamrt.errors import ConfigError
from streamrt.scheduler import Degradation, DegradationController, Scheduler, SchedulerSettings
from streamrt.scheduler.degradation import BusyMeter, saturation_reason
from streamrt.session import Session
from streamrt.testing import CountingModel


def test_ladder_has_only_the_knobs_the_model_offers():
    assert Degradation.for_model(CountingModel()).max_level == 0
    ladder = Degradation.for_model(TimedCountingModel(ManualClock(), chunk_ms=200))
    assert [(s.method, s.value, s.restore) for s in ladder.steps] == [
        ("set_low_precision_fraction", 0.5, 0.0),
        ("set_low_precision_fraction", 1.0, 0.5),
        ("set_chunk_ms", 400, 200),
        ("set_chunk_ms", 800, 400),
    ]


def test_set_level_turns_steps_on_and_off_in_order():
    model = TimedCountingModel(ManualClock(), chunk_ms=200)
    ladder = Degradation.for_model(model)
    ladder.set_level(model, 3)
    assert model.low_precision_fraction == 1.0 and model.chunk_ms == 400
    assert ladder.active == ("precision 50% low-bit", "precision 100% low-bit", "chunk x2")
    ladder.set_level(model, 1)
    assert model.low_precision_fraction == 0.5 and model.chunk_ms == 200
    ladder.set_level(model, 0)
    assert model.low_precision_fraction == 0.0 and ladder.active == ()


def test_controller_has_hysteresis_and_a_hold_time():
    c = DegradationController(high_water_ms=1000, low_water_ms=300, hold_ms=500, memory_ms=1000)
    assert c.decide(0, 4, 1500, now=0.0) == 1  # above high water: up
    assert c.decide(1, 4, 5000, now=0.2) == 1  # within the hold time: no change
    assert c.decide(1, 4, 5000, now=0.6) == 2  # still above and not falling: up again
    assert c.decide(2, 4, 600, now=2.0) == 2  # between the marks: stay
    assert c.decide(2, 4, 100, now=3.0) == 1  # below low water: down
    assert DegradationController(None, 0, 0).decide(0, 4, 1e9, 0.0) == 0  # disabled
    assert DegradationController(1000, 300, 0).decide(4, 4, 9000, 0.0) == 4  # top of the ladder


def test_controller_waits_while_a_level_drains_the_backlog():
    c = DegradationController(high_water_ms=1000, low_water_ms=300, hold_ms=500)
    assert c.decide(0, 4, 4000, now=0.0) == 1
    assert c.decide(1, 4, 3000, now=1.0) == 1  # above high water but below the 4000 at the change
    assert c.decide(1, 4, 4500, now=2.0) == 2  # growing again: this level is too weak


def test_controller_does_not_go_back_to_a_level_too_weak_for_this_load():
    c = DegradationController(high_water_ms=1000, low_water_ms=300, hold_ms=500, memory_ms=10_000)
    assert c.decide(0, 4, 2000, now=0.0, load=8) == 1  # level 0 failed with 8 streams
    assert c.decide(1, 4, 100, now=1.0, load=8) == 1  # so it is not retried with 8 streams
    assert c.decide(1, 4, 100, now=2.0, load=7) == 0  # fewer streams: retried
    assert c.decide(0, 4, 2000, now=3.0, load=7) == 1
    assert c.decide(1, 4, 100, now=13.5, load=7) == 0  # memory expired: retried


def test_busy_meter_measures_stepping_time_over_the_window():
    meter = BusyMeter()
    for start, end in [(0.0, 1.0), (2.0, 2.5), (4.0, 5.0)]:
        meter.observe(start, end)
    assert meter.fraction(5.0, 5.0, since=0.0) == pytest.approx(2.5 / 5.0)
    assert meter.fraction(5.0, 4.5, since=0.0) == pytest.approx(2.0 / 4.5)  # half of the first step is in
    assert meter.fraction(5.0, 5.0, since=0.5) is None  # less than a window since the last change
    assert meter.fraction(5.0, 2.0, since=0.0) == pytest.approx(1.0 / 2.0)
    assert meter.fraction(10.0, 5.0, since=0.0) == 0.0  # the last step ended as the window began


def test_controller_turns_up_on_a_busy_model_before_lag_builds():
    c = DegradationController(1000, 300, hold_ms=500, memory_ms=10_000, busy_fraction=0.95, idle_fraction=0.5)
    assert c.decide(0, 4, 100, now=0.0, load=8, busy=0.9) == 0  # busy, but below the limit
    assert c.decide(0, 4, 100, now=1.0, load=8, busy=None) == 0  # not measured yet
    assert c.decide(0, 4, 100, now=2.0, load=8, busy=0.97) == 1  # saturated: up while the lag is low
    assert c.decide(1, 4, 50, now=3.0, load=8, busy=0.7) == 1  # the same load: level 0 is not retried
    assert c.decide(1, 4, 50, now=12.5, load=8, busy=0.7) == 1  # memory expired, but not idle enough
    assert c.decide(1, 4, 50, now=13.0, load=8, busy=0.4) == 0  # idle: retried


def test_controller_retries_a_saturated_level_once_fewer_streams_would_fit_it():
    c = DegradationController(1000, 300, hold_ms=500, busy_fraction=0.95, idle_fraction=0.5)
    assert c.decide(0, 4, 100, now=0.0, load=20, busy=1.0) == 1
    assert c.decide(1, 4, 100, now=1.0, load=19, busy=0.6) == 1  # 1.0 * 19/20 would saturate it again
    assert c.decide(1, 4, 100, now=2.0, load=18, busy=0.6) == 0  # 1.0 * 18/20 = 0.9 fits


def test_saturation_needs_the_ladder_spent_and_a_busy_model_or_a_missed_deadline():
    kw = dict(busy_limit=0.95, window_s=5.0, lag_limit_ms=1000.0)
    # a rung left: the ladder will make room, however busy the model is
    assert saturation_reason(rungs_left=1, busy=1.0, worst_lag_ms=5000.0, **kw) is None
    top = saturation_reason(rungs_left=0, busy=0.97, worst_lag_ms=0.0, **kw)
    assert "busy 97% of the last 5 s" in top and "saturation_busy_fraction" in top and "every degradation rung" in top
    off = saturation_reason(rungs_left=None, busy=0.5, worst_lag_ms=1200.0, **kw)
    assert "waited 1200 ms" in off and "latency_budget_ms" in off and "degradation is off" in off
    assert saturation_reason(rungs_left=0, busy=0.94, worst_lag_ms=1000.0, **kw) is None  # room left
    assert saturation_reason(rungs_left=0, busy=None, worst_lag_ms=10.0, **kw) is None  # not measured yet
    assert saturation_reason(rungs_left=None, busy=1.0, worst_lag_ms=10.0, **{**kw, "busy_limit": None}) is None


def test_busy_settings_are_checked():
    with pytest.raises(ConfigError, match="degrade_busy_fraction"):
        SchedulerSettings(degrade_busy_fraction=1.5)
    with pytest.raises(ConfigError, match="degrade_idle_fraction"):
        SchedulerSettings(degrade_busy_fraction=0.5, degrade_idle_fraction=0.5)
    with pytest.raises(ConfigError, match="degrade_busy_window_ms"):
        SchedulerSettings(degrade_busy_window_ms=0)
    with pytest.raises(ConfigError, match="saturation_busy_fraction"):
        SchedulerSettings(saturation_busy_fraction=0)


async def run_near_capacity(settings, seconds: float = 30.0):
    """8 streams whose steps cost 0.195 s per 0.2 s of audio: real time, but with no room left."""
    clock = ManualClock()
    model = TimedCountingModel(clock, fixed_s=0.035, per_stream_s=0.02, chunk_ms=200)
    sched = Scheduler(model, clock=clock, settings=settings)
    sessions = [Session(model.create_stream(), clock, session_id=f"s{i}") for i in range(8)]
    await sched.start()
    for s in sessions:
        sched.add(s, Recorder())
    levels = []
    for k in range(int(seconds / 0.2)):
        await advance_to(sched, clock, 0.2 * k)
        for s in sessions:
            s.receive_audio(chunk(200))
            sched.wake(s)
        levels.append(sched.stats()["degradation"]["level"])
    await advance_to(sched, clock, seconds)
    final = sched.stats()
    await sched.stop(drain=False)
    return levels, final


async def test_a_saturated_model_turns_the_ladder_up_before_lag_builds_and_stays_there():
    levels, final = await run_near_capacity(SchedulerSettings(max_wait_ms=None))
    first = levels.index(1)
    assert 5.0 <= 0.2 * first <= 7.0  # one busy window (5 s) after the start
    assert set(levels[first:]) == {1}  # precision 50 % (0.146 s per step) is enough: no flapping
    assert final["busy_fraction"] == pytest.approx(0.146 / 0.2, abs=0.02)
    worst = max(v["max_lag_ms"] for v in final["per_session"].values())
    assert worst < 300  # the lag never came near the 1000 ms high water: the busy fraction moved it

    assert final["saturation"] is None  # rungs left (and room at this one): new streams are welcome

    levels_lag_only, final_lag_only = await run_near_capacity(SchedulerSettings(max_wait_ms=None,
                                                                                degrade_busy_fraction=None))
    assert set(levels_lag_only) == {0}
    assert final_lag_only["busy_fraction"] == pytest.approx(0.975, abs=0.02)
    assert final_lag_only["saturation"] is None  # busy, but the ladder still has every rung


async def test_a_busy_model_with_no_rung_left_reports_saturation():
    levels, final = await run_near_capacity(SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=None),
                                            seconds=10.0)
    assert set(levels) == {0}
    assert "busy 9" in final["saturation"] and "degradation is off" in final["saturation"]
    # the same load, judged against a higher limit: real time still holds, so not saturated
    _, roomy = await run_near_capacity(SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=None,
                                                         saturation_busy_fraction=0.99), seconds=10.0)
    assert roomy["saturation"] is None


async def run_overload(settings):
    """8 streams whose steps cost 0.45 s per 0.2 s of audio for 20 s, then 2 streams for 20 s."""
    clock = ManualClock()
    model = TimedCountingModel(clock, fixed_s=0.05, per_stream_s=0.05, chunk_ms=200)
    sched = Scheduler(model, clock=clock, settings=settings)
    rec = Recorder()
    sessions = [Session(model.create_stream(), clock, session_id=f"s{i}") for i in range(8)]
    await sched.start()
    for s in sessions:
        sched.add(s, rec)
    levels, lag_end_of_overload = [], None
    live = sessions
    for k in range(200):
        await advance_to(sched, clock, 0.2 * k)
        if k == 100:
            lag_end_of_overload = max(v["max_lag_ms"] for v in sched.stats()["per_session"].values())
            for s in sessions[2:]:
                sched.remove(s)
            live = sessions[:2]
        for s in live:
            s.receive_audio(chunk(200))
            sched.wake(s)
        levels.append(sched.stats()["degradation"]["level"])
    await advance_to(sched, clock, 0.2 * 200)
    final = sched.stats()
    for s in live:
        s.receive_eof()
        sched.wake(s)
    await sched.stop()
    return model, rec, levels, lag_end_of_overload, final


async def test_overload_turns_degradation_on_and_falling_load_turns_it_off():
    settings = SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=1000, degrade_low_water_ms=300,
                                 degrade_hold_ms=1000)
    model, rec, levels, lag, final = await run_overload(settings)
    assert max(levels[:100]) >= 3  # precision knobs alone do not keep up; longer chunks do
    assert final["degradation"]["level"] == 0 and levels[-1] == 0
    assert model.low_precision_fraction == 0.0 and model.chunk_ms == 200  # every knob restored
    assert final["worst_lag_ms"] < 300
    # nothing was lost on the way: both surviving streams delivered every word
    for sid in ("s0", "s1"):
        assert rec.committed_words(sid) == words_for(40_000) and rec.ended(sid)

    _, _, levels_off, lag_off, _ = await run_overload(
        SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=None)
    )
    assert max(levels_off) == 0
    assert lag_off > 3 * lag  # without the ladder the lag keeps growing
