"""Barge-in reaction on stand-ins (CountingModel ASR, EchoTextModel LLM, ToneTtsModel TTS, the
real silero VAD), in virtual time: user speech over the agent sends ``agent_pause`` within the
echo guard's time of its onset (the client stops at once, rather than playing out its lead); a
backchannel resumes the turn from the first word the user had not heard whole, so the audio put
together as a client plays it is the turn's audio exactly (no word skipped, none repeated); an
interruption after the pause keeps as heard exactly the words before that point."""

from __future__ import annotations

import asyncio

import numpy as np

from policies.turn_taking.registry import create
from streamrt.clock import ManualClock
from streamrt.dialogue.events import (AgentAudioEvent, AgentPauseEvent, AgentResumeEvent, AgentTurnEndEvent,
                                      InterruptedEvent)
from streamrt.dialogue.models import DialogueModels
from streamrt.dialogue.session import DialogueSession
from streamrt.dialogue.settings import DialogueSettings
from streamrt.models.vad import load_vad
from streamrt.scheduler import Scheduler, SchedulerSettings
from streamrt.testing import CountingModel, EchoTextModel, ToneTtsModel
from tests.streamrt.dialogue.dialogue_helpers import speech

SR = 16000
WORD_MS = 200  # the tone TTS's word length; its clauses are units of up to 12 words
GREETING = " ".join(f"w{i}" for i in range(20))  # two units: 12 words (0-2400 ms), 8 (2400-4000 ms)
ONSET_S = 0.9  # the user speaks this far into the agent's turn
VAD_RAMP_MS = 3 * 32.0  # silero's first frames of a word stay under the echo threshold (0.85)


async def _run(clip: np.ndarray, settings: DialogueSettings = DialogueSettings()) -> list[tuple[float, object]]:
    clock = ManualClock()
    models = DialogueModels(asr=CountingModel(), llm=EchoTextModel(), tts=ToneTtsModel(word_ms=WORD_MS),
                            vad=load_vad())
    sched = Scheduler(clock=clock, settings=SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=None))
    models.add_to(sched)
    await sched.start()
    s = DialogueSession(models, sched, clock, create("silence"), settings=settings, greeting=GREETING)
    track = np.zeros(int(7.0 * SR), np.float32)
    if len(clip):
        at = int(ONSET_S * SR)
        track[at:at + len(clip)] += clip
    events = []
    for i in range(0, len(track), 512):  # 32 ms frames in real time
        s.receive_audio(track[i:i + 512])
        await asyncio.sleep(0)
        await sched.wait_idle()
        events += [(clock.now(), e) for e in s.events()]
        clock.advance(0.032)
    s.receive_eof()
    await sched.wait_idle()
    events += [(clock.now(), e) for e in s.events()]
    await sched.stop()
    return events


def _played(events) -> np.ndarray:
    """The turn's audio as a client assembles it: each frame at its offset, a frame sent again after
    a resume replacing what it overlaps."""
    audio = np.zeros(0, np.float32)
    for _, e in events:
        if isinstance(e, AgentAudioEvent):
            audio = np.concatenate([audio[:round(e.offset_ms * e.sample_rate / 1000)], e.samples])
    return audio


async def test_a_backchannel_pauses_the_agent_within_the_guard_and_it_resumes_at_the_first_unheard_word():
    settings = DialogueSettings()
    events = await _run(speech("Right."), settings)
    (t_pause, pause), = [(t, e) for t, e in events if isinstance(e, AgentPauseEvent)]
    (t_resume, resume), = [(t, e) for t, e in events if isinstance(e, AgentResumeEvent)]
    assert not [e for _, e in events if isinstance(e, InterruptedEvent)]
    # within the guard's run (160 ms at p >= 0.85) and the VAD's ramp of the user's onset, not after
    # the client's lead (200 ms) played out on top of it
    assert ONSET_S < t_pause <= ONSET_S + (settings.echo_min_speech_ms + VAD_RAMP_MS) / 1000
    assert pause.turn == resume.turn == 1
    # the position heard is where the modelled playback was; the resume is at the start of that word
    assert abs(pause.position_ms - 1000 * t_pause) <= 32 + 1e-6
    assert resume.position_ms % WORD_MS == 0 and pause.position_ms - WORD_MS < resume.position_ms <= pause.position_ms
    # nothing between pause and resume; the first frame after the resume starts at its position
    between = [e for t, e in events if isinstance(e, AgentAudioEvent) and t_pause <= t < t_resume]
    after = [e for t, e in events if isinstance(e, AgentAudioEvent) and t >= t_resume]
    assert not between and after[0].offset_ms == resume.position_ms
    assert t_resume - t_pause >= settings.resume_after_ms / 1000
    # no word skipped, none repeated: what a client plays is the turn's audio exactly
    (end,) = [e for _, e in events if isinstance(e, AgentTurnEndEvent)]
    assert end.text == GREETING
    whole = _played(await _run(np.zeros(0, np.float32)))
    assert len(whole) == 20 * WORD_MS * 24 and np.array_equal(_played(events), whole)


async def test_an_interruption_after_the_pause_keeps_the_words_before_the_resume_point_as_heard():
    events = await _run(speech("Wait, stop. Tell me about the capital of Germany instead."))
    (t_pause, pause), = [(t, e) for t, e in events if isinstance(e, AgentPauseEvent)]
    (cut,) = [e for _, e in events if isinstance(e, InterruptedEvent)]
    assert not [e for _, e in events if isinstance(e, AgentResumeEvent)]
    assert not [e for t, e in events if isinstance(e, AgentAudioEvent) and e.turn == 1 and t >= t_pause]
    k = int(pause.position_ms // WORD_MS)  # words heard whole when playback stopped
    assert cut.heard_text == " ".join(GREETING.split()[:k])
