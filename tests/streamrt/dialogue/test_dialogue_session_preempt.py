"""Preemptive generation (``DialogueSettings.preempt_after_ms``) in virtual time on stand-ins
(CountingModel ASR, EchoTextModel LLM, ToneTtsModel TTS; the real silero VAD on flite speech): an
answer generated in the silence before the turn policy's decision is released at the decision,
the same answer as without preemption; one generated in a mid-turn pause is dropped when the user
goes on, and nothing of it (text or audio) reaches the client."""

from __future__ import annotations

import numpy as np

from policies.turn_taking.registry import create
from streamrt.dialogue.events import AgentAudioEvent, AgentTextEvent, AgentTurnStartEvent, UserTurnEndEvent
from streamrt.dialogue.settings import DialogueSettings
from tests.streamrt.dialogue.dialogue_helpers import play_on_stand_ins, silence, speech

WORD_MS = 100  # the TTS stand-in's speech per word


async def _dialogue(track: np.ndarray, preempt_after_ms: float | None) -> tuple[list, dict]:
    """The events with the virtual time they came out, and the session's summary (the ASR hears
    the speech runs only: the counting stand-in would count words in silence too)."""
    settings = DialogueSettings(preempt_after_ms=preempt_after_ms, asr_silence_tail_ms=0.0)
    events, _ = await play_on_stand_ins(track, create("silence", {"silence_ms": 800.0}), settings, WORD_MS)
    return events, events[-1][1].summary


def _of(events, kind) -> list:
    return [(t, e) for t, e in events if isinstance(e, kind)]


async def test_an_answer_made_in_the_silence_is_released_at_the_decision_unchanged():
    track = np.concatenate([silence(0.3), speech("What is the weather like today"), silence(2.5)])
    held, summary = await _dialogue(track, preempt_after_ms=0.0)
    plain, plain_summary = await _dialogue(track, preempt_after_ms=None)
    assert summary["preemptive_answers"] == 1 and summary["preemptive_answers_dropped"] == 0
    assert plain_summary["preemptive_answers"] == 0
    # the same turn, decided at the same moment, answered with the same words
    assert [(t, e.text) for t, e in _of(held, UserTurnEndEvent)] == [(t, e.text) for t, e in _of(plain, UserTurnEndEvent)]
    (decided, end), = _of(held, UserTurnEndEvent)
    answer = "".join(e.text for _, e in _of(held, AgentTextEvent))
    assert answer == "".join(e.text for _, e in _of(plain, AgentTextEvent)) == end.text and end.text
    # made while the policy waited: the whole answer comes at the decision, its audio with it
    (t_text, _), = _of(held, AgentTextEvent)
    t_audio = _of(held, AgentAudioEvent)[0][0]
    assert t_text == decided == t_audio == _of(held, AgentTurnStartEvent)[0][0]
    assert len(_of(plain, AgentTextEvent)) > 1  # without: the reply comes token by token after the decision
    heard = sum(len(e.samples) for _, e in _of(held, AgentAudioEvent))
    assert heard == sum(len(e.samples) for _, e in _of(plain, AgentAudioEvent)) == len(answer.split()) * WORD_MS * 24


async def test_an_answer_made_in_a_mid_turn_pause_is_dropped_and_never_heard():
    first, rest = speech("I would like to book"), speech("a table for two people tonight")
    track = np.concatenate([silence(0.3), first, silence(0.6), rest, silence(2.5)])
    events, summary = await _dialogue(track, preempt_after_ms=0.0)
    assert summary["preemptive_answers_dropped"] >= 1  # the pause's answer, dropped when the user went on
    assert summary["preemptive_answers"] == summary["preemptive_answers_dropped"] + 1
    (decided, end), = _of(events, UserTurnEndEvent)
    assert len(end.text.split()) > 6  # the whole turn, both parts
    # the client got one answer, to the whole turn, all after the decision: nothing of the dropped one
    answer = "".join(e.text for _, e in _of(events, AgentTextEvent))
    assert answer == end.text
    assert {e.turn for _, e in _of(events, AgentTextEvent) + _of(events, AgentAudioEvent)} == {1}
    assert min(t for t, _ in _of(events, AgentTextEvent) + _of(events, AgentAudioEvent)) >= decided
    assert sum(len(e.samples) for _, e in _of(events, AgentAudioEvent)) == len(answer.split()) * WORD_MS * 24
