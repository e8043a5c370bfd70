"""The scheduler on CountingModel in virtual time (ManualClock advanced by the model's own "compute"):
batching, joins and leaves, deadline order, failure isolation, clean drain. No wall-clock asserts."""

from __future__ import annotations

import asyncio

import pytest

from sched_helpers import Recorder, TimedCountingModel, TimedEchoTextModel, advance_to, answered, chunk, text_session, words_for
from streamrt.clock import ManualClock
from streamrt.errors import SessionClosed
from streamrt.scheduler import Scheduler, SchedulerSettings
from streamrt.session import Session
from streamrt.types import TextDelta

NO_WAIT = SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=None)


def make(n, clock, model, prefix="s"):
    return [Session(model.create_stream(), clock, session_id=f"{prefix}{i}") for i in range(n)]


async def feed_ticks(sched, clock, sessions, ticks, chunk_ms=200, t0=0.0):
    for k in range(ticks):
        await advance_to(sched, clock, t0 + k * chunk_ms / 1000)
        for s in sessions:
            s.receive_audio(chunk(chunk_ms))
            sched.wake(s)


async def finish(sched, sessions):
    for s in sessions:
        s.receive_eof()
        sched.wake(s)
    await sched.wait_idle()


async def test_ready_sessions_share_one_batched_step():
    clock = ManualClock()
    model = TimedCountingModel(clock, fixed_s=0.01, per_stream_s=0.001)
    sched = Scheduler(model, clock=clock, settings=NO_WAIT)
    rec = Recorder()
    sessions = make(8, clock, model)
    await sched.start()
    for s in sessions:
        sched.add(s, on_output=rec)
    await feed_ticks(sched, clock, sessions, ticks=10)
    await finish(sched, sessions)
    await sched.stop()

    assert max(model.batch_sizes) == 8
    assert sched.stats()["batch_size_mean"] > 4
    for s in sessions:  # every committed unit of every session reached the callback, in order
        assert rec.committed_words(s.id) == words_for(2000)
        assert rec.ended(s.id)
    assert sched.sessions == ()  # ended sessions leave on their own


async def test_sessions_join_and_leave_mid_run():
    clock = ManualClock()
    model = TimedCountingModel(clock, fixed_s=0.01, per_stream_s=0.001)
    sched = Scheduler(model, clock=clock, settings=NO_WAIT)
    rec = Recorder()
    a, b = make(2, clock, model, "early")
    (c,) = make(1, clock, model, "late")
    await sched.start()
    sched.add(a, rec)
    sched.add(b, rec)
    await feed_ticks(sched, clock, [a, b], ticks=5)
    sched.add(c, rec)  # joins after 1 s
    await feed_ticks(sched, clock, [a, b, c], ticks=5, t0=1.0)
    b_steps = sched.stats()["per_session"]["early1"]["steps"]
    sched.remove(b)  # leaves after 2 s, with no eof
    sched.remove(b)  # idempotent
    b.receive_audio(chunk(1000))
    sched.wake(b)  # ignored: no longer scheduled
    await feed_ticks(sched, clock, [a, c], ticks=5, t0=2.0)
    await finish(sched, [a, c])
    await sched.stop()

    assert rec.committed_words("early0") == words_for(3000)
    assert rec.committed_words("late0") == words_for(2000)
    assert rec.ended("early0") and rec.ended("late0")
    assert b.stream.consumed_ms == pytest.approx(b_steps * 200)  # untouched after removal
    assert not rec.ended("early1")
    # the late joiner shared steps with the others
    late = c.stream
    assert any(late in batch and len(batch) >= 2 for batch in model.stepped)


async def test_most_urgent_session_is_stepped_first():
    clock = ManualClock()
    model = TimedCountingModel(clock, fixed_s=0.05)
    sched = Scheduler(model, clock=clock, settings=SchedulerSettings(max_batch_size=1, max_wait_ms=None,
                                                                      degrade_high_water_ms=None))
    fresh, stale, middle = make(3, clock, model)
    await sched.start()
    for s in (fresh, stale, middle):
        sched.add(s)
    # audio arrives in the order stale (t=0), middle (t=0.3), fresh (t=0.6); added in another order
    stale.receive_audio(chunk(200)); sched.wake(stale)
    clock.advance(0.3)
    middle.receive_audio(chunk(200)); sched.wake(middle)
    clock.advance(0.3)
    fresh.receive_audio(chunk(200)); sched.wake(fresh)
    await sched.wait_idle()
    await sched.stop()

    order = [batch[0] for batch in model.stepped]
    assert order == [stale.stream, middle.stream, fresh.stream]


async def test_a_failing_stream_is_isolated_and_the_rest_go_on():
    clock = ManualClock()
    model = TimedCountingModel(clock, fixed_s=0.01)
    sched = Scheduler(model, clock=clock, settings=NO_WAIT)
    rec = Recorder()
    sessions = make(5, clock, model)
    bad = sessions[2]
    await sched.start()
    for s in sessions:
        sched.add(s, rec)
    await feed_ticks(sched, clock, sessions, ticks=3)
    bad.stream.poison = True
    await feed_ticks(sched, clock, sessions, ticks=7, t0=0.6)
    await finish(sched, sessions)
    await sched.stop()

    errors = rec.errors(bad.id)
    assert len(errors) == 1 and errors[0].code == "model_error" and errors[0].fatal
    assert "poisoned stream" in errors[0].message and bad.id in errors[0].message
    assert bad not in sched.sessions
    for s in sessions:
        if s is not bad:
            assert rec.committed_words(s.id) == words_for(2000) and rec.ended(s.id)
            assert not rec.errors(s.id)
    assert sched.stats()["failed_sessions"] == 1
    assert 4 in model.batch_sizes  # after the failure the others are batched again


async def test_an_exception_naming_its_stream_is_not_bisected():
    clock = ManualClock()

    class Naming(TimedCountingModel):
        def step(self, streams):
            for s in streams:
                if getattr(s, "poison", False):
                    err = RuntimeError("bad input in one stream")
                    err.stream = s
                    raise err
            super().step(streams)

    model = Naming(clock)
    sched = Scheduler(model, clock=clock, settings=NO_WAIT)
    sessions = make(6, clock, model)
    sessions[4].stream.poison = True
    await sched.start()
    for s in sessions:
        sched.add(s)
    await feed_ticks(sched, clock, sessions, ticks=1)
    await sched.wait_idle()
    await sched.stop()
    assert model.batch_sizes == [5]  # one failed attempt (unrecorded), then the other five at once


async def test_a_raising_callback_does_not_stop_the_loop():
    clock = ManualClock()
    model = TimedCountingModel(clock)
    sched = Scheduler(model, clock=clock, settings=NO_WAIT)
    rec = Recorder()
    good, noisy = make(2, clock, model)

    def explode(session):
        raise RuntimeError("client went away")

    await sched.start()
    sched.add(good, rec)
    sched.add(noisy, explode)
    await feed_ticks(sched, clock, [good, noisy], ticks=5)
    await finish(sched, [good, noisy])
    await sched.stop()
    assert rec.committed_words(good.id) == words_for(1000) and rec.ended(good.id)


async def test_stop_drains_all_pending_work_and_refuses_new_sessions():
    clock = ManualClock()
    model = TimedCountingModel(clock, fixed_s=0.02)
    sched = Scheduler(model, clock=clock, settings=NO_WAIT)
    rec = Recorder()
    sessions = make(3, clock, model)
    await sched.start()
    for s in sessions:
        sched.add(s, rec)
        s.receive_audio(chunk(2300))  # a burst: 12 steps of work each
        s.receive_eof()
        sched.wake(s)
    await sched.stop()  # no wait_idle first: stop itself must drain

    for s in sessions:
        assert rec.committed_words(s.id) == words_for(2300)
        assert rec.ended(s.id)
    with pytest.raises(SessionClosed):
        sched.add(make(1, clock, model, "x")[0])


async def test_stats_report_lag_batches_and_step_time_fit():
    clock = ManualClock()
    model = TimedCountingModel(clock, fixed_s=0.02, per_stream_s=0.005)
    sched = Scheduler(model, clock=clock, settings=NO_WAIT)
    sessions = make(4, clock, model)
    await sched.start()
    for s in sessions[:2]:
        sched.add(s)
    await feed_ticks(sched, clock, sessions[:2], ticks=4)
    for s in sessions[2:]:
        sched.add(s)
    await feed_ticks(sched, clock, sessions, ticks=4, t0=0.8)
    await sched.wait_idle()
    st = sched.stats()
    await sched.stop()
    assert st["batch_sizes"] == {2: 4, 4: 4}
    assert st["step_time"]["fixed_ms"] == pytest.approx(20, abs=0.5)
    assert st["step_time"]["per_stream_ms"] == pytest.approx(5, abs=0.1)
    assert set(st["per_session"]) == {s.id for s in sessions}
    assert all(v["lag_ms"] == 0 and v["steps"] >= 4 for v in st["per_session"].values())
    assert st["degradation"]["level"] == 0


async def test_a_session_with_nothing_left_to_step_still_ends():
    clock = ManualClock()
    model = TimedCountingModel(clock)
    sched = Scheduler(model, clock=clock, settings=NO_WAIT)
    rec = Recorder()
    (s,) = make(1, clock, model)
    await sched.start()
    sched.add(s, rec)
    s.receive_eof()  # no audio at all: the stream is done without a step
    sched.wake(s)
    await sched.wait_idle()
    await sched.stop()
    assert rec.ended(s.id) and rec.committed_words(s.id) == []
    assert model.steps == 0 and sched.sessions == ()


@pytest.mark.parametrize("max_wait_ms, first_batch", [(None, 1), (5000.0, 4)])
async def test_max_wait_gathers_sessions_that_become_ready_soon(max_wait_ms, first_batch):
    clock = ManualClock()
    model = TimedCountingModel(clock, fixed_s=0.01)
    settings = SchedulerSettings(max_wait_ms=max_wait_ms, latency_budget_ms=60_000, degrade_high_water_ms=None)
    sched = Scheduler(model, clock=clock, settings=settings)
    sessions = make(4, clock, model)
    await sched.start()
    for s in sessions:
        sched.add(s)
    await asyncio.sleep(0)
    for s in sessions:  # they become ready one after another, yielding to the loop in between
        s.receive_audio(chunk(200))
        sched.wake(s)
        for _ in range(3):
            await asyncio.sleep(0)
    await sched.wait_idle()
    await sched.stop()
    # the gather ends as soon as every scheduled session is ready: no real waiting happened
    assert model.batch_sizes[0] == first_batch
    assert sum(model.batch_sizes) == 4


async def test_stop_cuts_a_drain_that_never_ends():
    clock = ManualClock()

    class Stuck(TimedCountingModel):
        def step(self, streams):  # never consumes: the stream stays ready for ever
            self.batch_sizes.append(len(streams))

    model = Stuck(clock)
    sched = Scheduler(model, clock=clock, settings=NO_WAIT)
    (s,) = make(1, clock, model)
    await sched.start()
    sched.add(s)
    s.receive_audio(chunk(400))
    sched.wake(s)
    await sched.stop(drain_timeout_s=0.05)
    assert len(model.batch_sizes) > 1 and s in sched.sessions


async def test_steps_run_off_the_event_loop_which_keeps_serving_meanwhile():
    import threading

    clock = ManualClock()
    started, released = threading.Event(), threading.Event()

    class Blocking(TimedCountingModel):
        def step(self, streams):
            started.set()
            self.released_by_loop = released.wait(timeout=5)  # only a coroutine on the loop sets it
            self.thread = threading.current_thread()
            super().step(streams)

    model = Blocking(clock)
    sched = Scheduler(model, clock=clock, settings=NO_WAIT)
    (s,) = make(1, clock, model)
    await sched.start()
    sched.add(s)
    s.receive_audio(chunk(200))
    sched.wake(s)
    while not started.is_set():  # if the step blocked the loop, this would not run until it timed out
        await asyncio.sleep(0.001)
    released.set()
    await sched.wait_idle()
    await sched.stop()
    assert model.released_by_loop and model.thread is not threading.main_thread()


async def test_text_streams_are_batched_too():
    """Conversations through the engine's text interface (TextDelta in, one token per step out),
    with no audio: a stream is ready while it has tokens to generate."""
    clock = ManualClock()
    model = TimedEchoTextModel(clock, fixed_s=0.01)
    sched = Scheduler(model, clock=clock, settings=NO_WAIT)
    rec = Recorder()
    turns = ("a b c d e", "f g h", "i j k l")
    sessions = [text_session(model, clock, f"c{i}") for i in range(3)]
    await sched.start()
    for turn, s in zip(turns, sessions):
        sched.add(s, rec)
        s.receive(TextDelta(turn, end_of_turn=True))
        sched.wake(s)
    await sched.wait_idle()
    for s in sessions:
        s.receive_eof()
        sched.wake(s)
    await sched.stop()
    assert model.batch_sizes == [3, 3, 3, 2, 1]
    for turn, s in zip(turns, sessions):
        assert answered(rec, s.id) == turn.split() and rec.ended(s.id)
    assert sorted(model.free_slots) == list(range(8))  # every answer gave its slot back


async def test_gather_slack_counts_the_live_sessions_not_max_batch_size():
    # t(b) = 0.1 s per stream: t(max_batch_size=64) = 6.4 s is past any deadline, but the next step
    # can hold at most the 2 live sessions (0.2 s), so the gather must still wait for the second one
    clock = ManualClock()
    model = TimedCountingModel(clock, per_stream_s=0.1)
    settings = SchedulerSettings(max_wait_ms=300, latency_budget_ms=1000, degrade_high_water_ms=None)
    sched = Scheduler(model, clock=clock, settings=settings)
    a, b = make(2, clock, model)
    await sched.start()
    sched.add(a)
    sched.add(b)
    a.receive_audio(chunk(200))  # alone: a one-stream step (the gather times out for b)
    sched.wake(a)
    await sched.wait_idle()
    for s in (a, b):  # together: a two-stream step; the fit now knows the per-stream cost
        s.receive_audio(chunk(200))
        sched.wake(s)
    await sched.wait_idle()
    assert model.batch_sizes[-2:] == [1, 2]
    a.receive_audio(chunk(200))
    sched.wake(a)
    for _ in range(3):
        await asyncio.sleep(0)
    b.receive_audio(chunk(200))
    sched.wake(b)
    await sched.wait_idle()
    await sched.stop()
    assert model.batch_sizes[-1] == 2
