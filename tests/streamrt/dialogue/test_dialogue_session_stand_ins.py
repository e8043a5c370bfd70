"""The dialogue session on stand-ins (CountingModel ASR, EchoTextModel LLM, ToneTtsModel TTS; the
real silero VAD): a greeting is spoken first as its own paced agent turn; bad audio becomes an
error event naming the problem and the session goes on; past max_input_s the session is closed
with the setting named; close() ends it at once with DialogueEndEvent."""

from __future__ import annotations

import asyncio

import numpy as np

from policies.turn_taking.registry import create
from streamrt.clock import ManualClock
from streamrt.dialogue.events import AgentAudioEvent, AgentTurnEndEvent, AgentTurnStartEvent, DialogueEndEvent
from streamrt.dialogue.models import DialogueModels
from streamrt.dialogue.session import DialogueSession
from streamrt.dialogue.settings import DialogueSettings
from streamrt.models.vad import load_vad
from streamrt.scheduler import Scheduler, SchedulerSettings
from streamrt.testing import CountingModel, EchoTextModel, ToneTtsModel
from streamrt.types import ErrorEvent


async def _session(clock, **kw):
    models = DialogueModels(asr=CountingModel(), llm=EchoTextModel(), tts=ToneTtsModel(word_ms=100), vad=load_vad())
    sched = Scheduler(clock=clock, settings=SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=None))
    models.add_to(sched)
    await sched.start()
    return sched, DialogueSession(models, sched, clock, create("silence"), **kw)


async def _feed(sched, s, clock, frames: int, samples=None) -> list:
    events = []
    for _ in range(frames):
        s.receive_audio(np.zeros(512, np.float32) if samples is None else samples)
        await asyncio.sleep(0)
        await sched.wait_idle()
        clock.advance(0.032)
        events += [(clock.now(), e) for e in s.events()]
    return events


async def test_a_greeting_is_spoken_first_and_paced():
    clock = ManualClock()
    sched, s = await _session(clock, greeting="Hello, how can I help?")
    events = await _feed(sched, s, clock, 40)  # 1.28 s of silence from the user
    s.receive_eof()
    await sched.wait_idle()
    events += [(clock.now(), e) for e in s.events()]
    await sched.stop()
    kinds = [type(e) for _, e in events]
    assert kinds.index(AgentTurnStartEvent) < kinds.index(AgentAudioEvent) < kinds.index(AgentTurnEndEvent)
    (end,) = [e for _, e in events if isinstance(e, AgentTurnEndEvent)]
    assert end.text == "Hello, how can I help?" and end.turn == 1
    audio = [(t, e) for t, e in events if isinstance(e, AgentAudioEvent)]
    assert sum(len(e.samples) for _, e in audio) == 5 * 100 * 24  # 5 words of 100 ms at 24 kHz
    assert audio[-1][0] - audio[0][0] >= 0.5 - 0.2 - 0.032  # paced: over the speech, less the lead (+ a frame)
    assert isinstance(events[-1][1], DialogueEndEvent)


async def test_bad_audio_is_refused_by_name_and_the_limit_closes_the_session():
    clock = ManualClock()
    sched, s = await _session(clock, settings=DialogueSettings(max_input_s=0.1))
    bad = np.full(512, np.nan, np.float32)
    events = [e for _, e in await _feed(sched, s, clock, 1, bad)]
    assert [(e.code, e.fatal) for e in events if isinstance(e, ErrorEvent)] == [("bad_samples", False)]
    events = [e for _, e in await _feed(sched, s, clock, 4)]  # 4 x 32 ms: past 0.1 s
    (err,) = [e for e in events if isinstance(e, ErrorEvent)]
    assert err.fatal and "max_input_s" in err.message and "0.128" in err.message
    await sched.wait_idle()
    events += s.events()
    assert s.ended and isinstance(events[-1], DialogueEndEvent)
    await sched.stop()


async def test_close_ends_at_once():
    clock = ManualClock()
    sched, s = await _session(clock)
    await _feed(sched, s, clock, 3)
    s.close()
    await sched.wait_idle()
    assert s.ended and isinstance(s.events()[-1], DialogueEndEvent)
    await sched.stop()


async def test_two_dialogues_share_the_models_and_keep_their_own_state():
    """Two sessions on one scheduler: the VAD steps both in one batch, only the one whose user spoke
    gets an answer (the echo LLM says the user's words back), the other stays silent; the ASR gets
    only the audio around speech (the other session's silence never reaches it)."""
    from tests.streamrt.dialogue.dialogue_helpers import silence, speech

    clock = ManualClock()
    models = DialogueModels(asr=CountingModel(word_ms=300), llm=EchoTextModel(), tts=ToneTtsModel(word_ms=100),
                            vad=load_vad())
    sched = Scheduler(clock=clock, settings=SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=None))
    models.add_to(sched)
    batches = []
    sched.add_step_listener(lambda n, s: batches.append(n))
    await sched.start()
    a, b = (DialogueSession(models, sched, clock, create("silence", {"silence_ms": 500})) for _ in range(2))
    track = np.concatenate([silence(0.3), speech("Please call Stella."), silence(2.5)])
    events = {a: [], b: []}
    for i in range(0, len(track) - 511, 512):
        a.receive_audio(track[i:i + 512])
        b.receive_audio(np.zeros(512, np.float32))
        await asyncio.sleep(0)
        await sched.wait_idle()
        clock.advance(0.032)
        for s in (a, b):
            events[s] += s.events()
    await sched.stop()
    starts = {s: [e for e in events[s] if isinstance(e, AgentTurnStartEvent)] for s in (a, b)}
    assert len(starts[a]) == 1 and starts[b] == []
    ends = [e for e in events[a] if isinstance(e, AgentTurnEndEvent)]
    assert ends and ends[0].text.split() == [w for w in " ".join(
        e.text for e in events[a] if e.type == "user_commit").split()]
    assert max(batches) >= 2  # the two VAD streams were stepped together
    # the ASR heard only the speech (with its pre-roll and silence tail), not the silence around it
    assert b.summary()["asr_audio_ms"] == 0
    assert 1000 * len(track) / 16000 - 1000 > a.summary()["asr_audio_ms"] > 1000 * len(speech("Please call Stella.")) / 16000


def test_whispersstrip_trailing_off_ellipsis_is_not_read_as_a_finished_turn():
    from streamrt.dialogue.session import strip_trailing_off

    assert strip_trailing_off("I have been sleeping badly and...") == "I have been sleeping badly and"
    assert strip_trailing_off("Well\u2026") == "Well"
    assert strip_trailing_off("What is it?") == "What is it?" and strip_trailing_off("Paris.") == "Paris."
