"""Background work (uploads) beside live sessions, in virtual time on CountingModel: a full-speed
upload keeps the degradation ladder at level 0 and the live session on its deadline, and still
finishes with every word; under a real-time overload it yields but gets its least share."""

from __future__ import annotations

import pytest

from sched_helpers import Recorder, TimedCountingModel, advance_to, chunk, words_for
from streamrt.clock import ManualClock
from streamrt.errors import ConfigError
from streamrt.scheduler import Scheduler, SchedulerSettings
from streamrt.session import Session

UPLOAD_S = 60.0
LIVE_S = 20.0
AHEAD_S = 5.0


async def _live_beside_upload(background: bool):
    """One live session fed in real time (200 ms a tick) for LIVE_S, and one upload of UPLOAD_S
    audio fed as fast as the model takes it (kept AHEAD_S ahead, as ``server.transcribe`` does).
    Each step takes 50 ms: the upload alone keeps the machine busy for 15 s."""
    clock = ManualClock()
    model = TimedCountingModel(clock, fixed_s=0.05)
    sched = Scheduler(model, clock=clock, settings=SchedulerSettings(max_wait_ms=None, degrade_hold_ms=500,
                                                                     degrade_busy_window_ms=2000))
    rec = Recorder()
    live = Session(model.create_stream(), clock, session_id="live")
    upload = Session(model.create_stream(), clock, session_id="upload")
    await sched.start()
    sched.add(live, on_output=rec)
    sched.add(upload, on_output=rec, background=background)
    fed_ms = 0.0
    for k in range(int(LIVE_S / 0.2)):
        await advance_to(sched, clock, k * 0.2)
        live.receive_audio(chunk(200))
        sched.wake(live)
        if fed_ms < UPLOAD_S * 1000:  # top the upload up to AHEAD_S of backlog
            more = min(UPLOAD_S * 1000 - fed_ms, AHEAD_S * 1000 - upload.stream.received_ms
                       + upload.stream.consumed_ms)
            if more > 0:
                upload.receive_audio(chunk(more))
                fed_ms += more
                if fed_ms >= UPLOAD_S * 1000:
                    upload.receive_eof()
                sched.wake(upload)
    live_misses = sched.session_stats(live)["deadline_misses"]
    live.receive_eof()
    sched.wake(live)
    await sched.wait_idle()
    stats = sched.stats()
    await sched.stop()
    return rec, stats, live_misses, live.id, upload.id


async def test_a_full_speed_upload_does_not_degrade_a_live_session():
    rec, stats, live_misses, live, upload = await _live_beside_upload(background=True)
    assert stats["degradation"]["changes"] == 0 and stats["degradation"]["history"] == []
    assert live_misses == 0
    assert rec.committed_words(live) == words_for(LIVE_S * 1000)
    assert rec.committed_words(upload) == words_for(UPLOAD_S * 1000)  # the whole transcript
    assert rec.ended(upload)


async def test_the_same_upload_as_real_time_work_turns_the_ladder_up():
    """The control: without the background class the upload's full-speed steps keep the machine
    busy and the ladder climbs for every session (what the benchmark saw)."""
    _, stats, _, _, _ = await _live_beside_upload(background=False)
    assert stats["degradation"]["changes"] > 0


@pytest.mark.parametrize("share", [0.2, None])
async def test_under_real_time_overload_background_yields_but_gets_its_share(share):
    """Four live sessions need 120 % of the machine (ladder off) for 10 s, then stop. With
    background_min_share the upload still advances during the overload, at about its share; with
    None it waits for the overload to end. Either way it finishes with every word."""
    clock = ManualClock()
    model = TimedCountingModel(clock, fixed_s=0.06)
    settings = SchedulerSettings(max_wait_ms=None, max_batch_size=1, degrade_high_water_ms=None,
                                 degrade_busy_window_ms=2000, background_min_share=share)
    sched = Scheduler(model, clock=clock, settings=settings)
    rec = Recorder()
    lives = [Session(model.create_stream(), clock, session_id=f"live{i}") for i in range(4)]
    upload = Session(model.create_stream(), clock, session_id="upload")
    await sched.start()
    for s in lives:
        sched.add(s, on_output=rec)
    sched.add(upload, on_output=rec, background=True)
    upload.receive_audio(chunk(20_000))  # within the 30 s buffer limit: no top-up needed
    upload.receive_eof()
    sched.wake(upload)
    for k in range(50):  # 10 s at 200 ms a tick: each tick brings 4 steps of 60 ms
        await advance_to(sched, clock, k * 0.2)
        for s in lives:  # a first second at once: a real-time stream is ready at every moment
            s.receive_audio(chunk(1000 if k == 0 else 200))
            sched.wake(s)
    await advance_to(sched, clock, 10.0)
    during = upload.stream.consumed_ms
    background_steps = sum(1 for step in model.stepped if step == [upload.stream])
    if share is None:
        assert during == 0  # starved while the real-time work has no slack
    else:  # about its share of 10 s of 60 ms steps (each step consumes 200 ms of audio)
        assert background_steps >= int(share * 10 / 0.06) - 2
        assert during >= 200 * (int(share * 10 / 0.06) - 2)
    for s in lives:
        s.receive_eof()
        sched.wake(s)
    await sched.wait_idle()
    await sched.stop()
    assert rec.committed_words("upload") == words_for(20_000) and rec.ended("upload")
    for s in lives:
        assert rec.committed_words(s.id) == words_for(10_800)


def test_background_min_share_is_checked():
    with pytest.raises(ConfigError, match="background_min_share"):
        SchedulerSettings(background_min_share=1.0)


async def test_the_ladder_comes_back_down_while_only_background_work_runs():
    """A full-speed real-time client walks the ladder up and leaves; an upload that follows at once
    keeps the machine as busy, but the ladder comes back to level 0 within a few hold times."""
    clock = ManualClock()
    model = TimedCountingModel(clock, fixed_s=0.05)
    sched = Scheduler(model, clock=clock, settings=SchedulerSettings(max_wait_ms=None, degrade_hold_ms=500,
                                                                     degrade_busy_window_ms=2000))
    rec = Recorder()
    fast = Session(model.create_stream(), clock, session_id="fast")
    upload = Session(model.create_stream(), clock, session_id="upload")
    await sched.start()
    sched.add(fast, on_output=rec)
    fast.receive_audio(chunk(25_000))  # a real-time-class client that sent 25 s at once
    fast.receive_eof()
    sched.wake(fast)
    await sched.wait_idle()
    assert sched.degradation.level > 0 and rec.ended("fast")
    up_at = clock.now()
    sched.add(upload, on_output=rec, background=True)
    upload.receive_audio(chunk(25_000))
    upload.receive_eof()
    sched.wake(upload)
    await advance_to(sched, clock, up_at + 3.0)
    assert sched.degradation.level == 0
    await sched.wait_idle()
    await sched.stop()
    assert rec.committed_words("upload") == words_for(25_000)
