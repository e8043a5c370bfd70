"""One scheduler, several models, in virtual time: ASR sessions (TimedCountingModel) and LLM
conversations (TimedEchoTextModel) share one worker thread; deadlines and priorities pick which
model steps; cancel frees a slot at the step boundary; busy fraction counts every model; a failure
stays with its session and its model."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sched_helpers import Recorder, TimedCountingModel, TimedEchoTextModel, advance_to, answered, chunk, text_session, words_for
from streamrt.clock import ManualClock
from streamrt.errors import ConfigError
from streamrt.scheduler import Scheduler, SchedulerSettings
from streamrt.session import Session
from streamrt.types import TextDelta

NO_WAIT = SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=None)


def two_models(clock, settings=NO_WAIT, asr_s=0.02, llm_s=0.02, **llm_kw):
    log: list = []
    asr = TimedCountingModel(clock, fixed_s=asr_s)
    asr.log = log
    llm = TimedEchoTextModel(clock, fixed_s=llm_s, log=log, **llm_kw)
    sched = Scheduler(asr, clock=clock, settings=settings)
    sched.add_model(llm, name="llm")
    return sched, asr, llm, log


async def test_asr_sessions_and_llm_conversations_share_one_scheduler_and_one_thread():
    clock = ManualClock()
    sched, asr, llm, log = two_models(clock)
    threads = set()
    real_asr, real_llm = asr.step, llm.step
    asr.step = lambda streams: threads.add(threading.get_ident()) or real_asr(streams)
    llm.step = lambda streams: threads.add(threading.get_ident()) or real_llm(streams)
    rec = Recorder()
    captions = [Session(asr.create_stream(), clock, session_id=f"asr{i}") for i in range(2)]
    chats = [text_session(llm, clock, f"chat{i}") for i in range(2)]
    await sched.start()
    for s in captions:
        sched.add(s, rec)
    for c in chats:
        sched.add(c, rec, model=llm)
    for k in range(10):  # 2 s of audio; each conversation gets a turn at 0.4 s
        await advance_to(sched, clock, k * 0.2)
        for s in captions:
            s.receive_audio(chunk(200))
            sched.wake(s)
        if k == 2:
            for c, turn in zip(chats, ("hi there", "what time is it")):
                c.receive(TextDelta(turn, end_of_turn=True))
                sched.wake(c)
    for s in captions + chats:
        s.receive_eof()
        sched.wake(s)
    await sched.wait_idle()
    st = sched.stats()
    await sched.stop()

    for s in captions:
        assert rec.committed_words(s.id) == words_for(2000) and rec.ended(s.id)
    assert answered(rec, "chat0") == ["hi", "there"] and answered(rec, "chat1") == ["what", "time", "is", "it"]
    assert all(rec.ended(c.id) for c in chats)
    kinds = [k for k, _ in log]
    first_llm = kinds.index("llm")
    assert "asr" in kinds[first_llm:]  # interleaved, not one model after the other
    assert len(threads) == 1 and threading.get_ident() not in threads  # one worker thread for both
    assert st["models"]["llm"]["steps"] == 4 and st["models"]["llm"]["batch_sizes"] == {2: 2, 1: 2}
    assert st["models"]["TimedCountingModel"]["steps"] == st["steps"] > 0


async def _steps_after(sched, log, feed):
    """With ``sched`` started and idle, let ``feed()`` make streams ready without yielding; return
    the kinds of the steps that follow."""
    del log[:]
    feed()
    await sched.wait_idle()
    await sched.stop()
    return [k for k, _ in log]


async def test_an_llm_turn_waiting_on_its_first_token_beats_an_asr_stream_with_slack():
    # the ASR step is due first (t=1.0 against 2.1), but both can wait a step: priority decides
    clock = ManualClock()
    sched, asr, llm, log = two_models(clock, first_token_budget_ms=2000.0)
    caption = Session(asr.create_stream(), clock)
    chat = text_session(llm, clock, "chat")
    await sched.start()
    sched.add(caption)
    sched.add(chat, model=llm)

    def feed():
        caption.receive_audio(chunk(200))
        sched.wake(caption)
        clock.advance(0.1)
        chat.receive(TextDelta("hello", end_of_turn=True))
        sched.wake(chat)

    assert await _steps_after(sched, log, feed) == ["llm", "asr"]


@pytest.mark.parametrize("first_token", [True, False])
async def test_an_asr_stream_near_its_deadline_beats_an_llm_token(first_token):
    # the ASR stream became ready 0.95 s ago (budget 1 s): stepping the LLM (0.1 s) first would make
    # it miss, so it goes first, whether the LLM waits on its first token (priority 1) or decodes
    clock = ManualClock()
    sched, asr, llm, log = two_models(clock, asr_s=0.04, llm_s=0.1, first_token_budget_ms=500.0)
    caption = Session(asr.create_stream(), clock)
    chat = text_session(llm, clock, "chat")
    await sched.start()
    sched.add(caption)
    sched.add(chat, model=llm)
    caption.receive_audio(chunk(200))  # one step of each first: the step-time fits learn the costs
    sched.wake(caption)
    chat.receive(TextDelta("warm up", end_of_turn=True))
    sched.wake(chat)
    await sched.wait_idle()

    def feed():
        caption.receive_audio(chunk(200))
        sched.wake(caption)
        clock.advance(0.95)
        chat.receive(TextDelta(" one two three", end_of_turn=True))
        if not first_token:
            chat.step(llm)  # the first token is out (the scheduler is idle): the rest is decoding
            del log[:]
        assert chat.stream.urgency().priority == (1 if first_token else 0)
        sched.wake(chat)

    assert await _steps_after(sched, log, feed) == ["asr"] + ["llm"] * (3 if first_token else 2)


async def test_cancel_frees_the_slot_at_the_next_step_boundary():
    clock = ManualClock()
    started, release = threading.Event(), threading.Event()

    class Held(TimedEchoTextModel):
        def step(self, streams):
            super().step(streams)  # takes the slot
            started.set()
            release.wait(timeout=5)

    llm = Held(clock, slots=1)
    sched = Scheduler(llm, clock=clock, settings=NO_WAIT)
    rec = Recorder()
    a, b = text_session(llm, clock, "a"), text_session(llm, clock, "b")
    await sched.start()
    sched.add(a, rec)
    sched.add(b, rec)
    a.receive(TextDelta("a long answer of many words", end_of_turn=True))
    sched.wake(a)
    while not started.is_set():  # a's first step is in flight in the worker thread
        await asyncio.sleep(0.001)
    sched.cancel(a)
    assert llm.free_slots == [] and not a.ended  # the step in flight still holds it
    release.set()
    await sched.wait_progress()
    assert a.ended and a.cancelled and llm.free_slots == [0] and a not in sched.sessions
    assert answered(rec, "a") == ["a"] and rec.ended("a")  # what its last step made is delivered
    b.receive(TextDelta("next please", end_of_turn=True))  # the freed slot serves b
    sched.wake(b)
    await sched.wait_idle()
    sched.cancel(a)  # idempotent
    await sched.stop()
    assert answered(rec, "b") == ["next", "please"]
    assert sched.stats()["cancelled_sessions"] == 1


async def test_cancel_between_steps_ends_the_session_at_once():
    clock = ManualClock()
    sched, asr, llm, log = two_models(clock)
    rec = Recorder()
    chat = text_session(llm, clock, "chat")
    caption = Session(asr.create_stream(), clock, session_id="cap")
    await sched.start()
    sched.add(chat, rec, model=llm)
    sched.add(caption, rec)
    caption.receive_audio(chunk(1000))
    sched.wake(caption)
    sched.cancel(caption)
    assert caption.ended and rec.ended("cap") and caption not in sched.sessions
    await sched.wait_idle()
    await sched.stop()
    assert log == []  # no step ran for the cancelled stream


async def test_no_gather_wait_while_another_models_stream_is_ready():
    # the ASR stream leads (deadline 120 s against the chat's 240 s) and its model has a second live
    # session: before, the gather waited (here up to a minute) for it while the chat's turn sat ready
    # and the worker idled (a lip model's frames did this to Whisper). Now the chat steps at once;
    # with only ASR streams ready, the gather still waits and the two captions share a step.
    clock = ManualClock()
    settings = SchedulerSettings(max_wait_ms=60_000, latency_budget_ms=120_000, degrade_high_water_ms=None)
    sched, asr, llm, log = two_models(clock, settings, first_token_budget_ms=240_000)
    a, b = (Session(asr.create_stream(), clock, session_id=f"cap{i}") for i in range(2))
    chat = text_session(llm, clock, "chat")
    await sched.start()
    sched.add(a)
    sched.add(b)
    sched.add(chat, model=llm)
    a.receive_audio(chunk(200))
    sched.wake(a)
    chat.receive(TextDelta("hello", end_of_turn=True))
    sched.wake(chat)
    await asyncio.wait_for(sched.wait_progress(), timeout=10)  # a hang guard: the old wait was 60 s
    assert [k for k, _ in log] == ["llm"]
    b.receive_audio(chunk(200))
    sched.wake(b)
    await sched.wait_idle()
    assert [(k, len(streams)) for k, streams in log] == [("llm", 1), ("asr", 2)]
    for s in (a, b, chat):
        s.receive_eof()
        sched.wake(s)
    await sched.wait_idle()
    await sched.stop()


async def test_busy_fraction_counts_every_model_on_the_machine():
    # each model alone keeps the machine busy a quarter of the time (0.05 s per 0.2 s); together half
    clock = ManualClock()
    settings = SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=None, degrade_busy_window_ms=1000)
    sched, asr, llm, log = two_models(clock, settings, asr_s=0.05, llm_s=0.05)
    caption = Session(asr.create_stream(), clock)
    chat = text_session(llm, clock, "chat")
    await sched.start()
    sched.add(caption)
    sched.add(chat, model=llm)
    for k in range(15):
        await advance_to(sched, clock, k * 0.2)
        caption.receive_audio(chunk(200))
        sched.wake(caption)
        chat.receive(TextDelta(f" w{k}", end_of_turn=True))
        sched.wake(chat)
    await advance_to(sched, clock, 3.0)
    busy = sched.stats()["busy_fraction"]
    await sched.stop()
    assert busy == pytest.approx(0.5, abs=0.01)


async def test_a_failure_stays_with_its_session_and_its_model():
    clock = ManualClock()
    sched, asr, llm, log = two_models(clock)

    def broken(streams):
        raise RuntimeError("the LLM is broken")

    llm.step = broken
    rec = Recorder()
    captions = [Session(asr.create_stream(), clock, session_id=f"asr{i}") for i in range(3)]
    chats = [text_session(llm, clock, f"chat{i}") for i in range(2)]
    await sched.start()
    for s in captions:
        sched.add(s, rec)
    for c in chats:
        sched.add(c, rec, model=llm)
        c.receive(TextDelta("hello", end_of_turn=True))
        sched.wake(c)
    captions[1].stream.poison = True
    for k in range(5):
        await advance_to(sched, clock, k * 0.2)
        for s in captions:
            s.receive_audio(chunk(200))
            sched.wake(s)
    for s in captions:
        s.receive_eof()
        sched.wake(s)
    await sched.wait_idle()
    await sched.stop()
    for c in chats:
        assert [e.code for e in rec.errors(c.id)] == ["model_error"]
    assert [e.code for e in rec.errors("asr1")] == ["model_error"]
    for sid in ("asr0", "asr2"):
        assert rec.committed_words(sid) == words_for(1000) and rec.ended(sid) and not rec.errors(sid)
    assert sched.stats()["failed_sessions"] == 3


def test_a_session_of_a_model_not_on_the_scheduler_is_refused():
    clock = ManualClock()
    sched, asr, llm, log = two_models(clock)
    other = TimedEchoTextModel(clock)
    with pytest.raises(ConfigError, match="not on this scheduler"):
        sched.add(text_session(other, clock, "x"), model=other)
    with pytest.raises(ConfigError, match="already on this scheduler"):
        sched.add_model(llm)
