"""The user going on after the agent took over a mid-turn pause (Full-Duplex-Bench's pause
handling), in virtual time on stand-ins (CountingModel ASR, EchoTextModel LLM: it answers a turn
with the turn's words; ToneTtsModel TTS; the real silero VAD on flite speech). A silence policy
with a short threshold takes over a 1 s pause; the user's next words, 0.5 s into the agent's
voice, make it yield once they have lasted ``continue_min_speech_ms`` (the agent is paused from
their onset; ``continue_window_ms``), its false start is withdrawn from the LLM,
and the answer is to the whole turn. A backchannel later in the answer still pauses and resumes
it; with the window off the takeover goes on as before (a pause, then a resume)."""

from __future__ import annotations

import numpy as np
import pytest

from policies.turn_taking.registry import create
from streamrt.dialogue.events import (AgentAudioEvent, AgentPauseEvent, AgentResumeEvent, AgentTextEvent,
                                      AgentTurnStartEvent, InterruptedEvent, UserTurnEndEvent)
from streamrt.dialogue.session import DialogueSession
from streamrt.dialogue.settings import DialogueSettings
from streamrt.testing import ToneTtsModel
from tests.streamrt.dialogue.dialogue_helpers import Dialogue, play_on_stand_ins, silence, speech

FIRST, REST = "I would like to know", "how far away the moon is."
CONTINUE_S = (300 + 3 * 32 + 32) / 1000  # continue_min_speech_ms, silero's ramp at 0.85, one frame


async def _dialogue(track: np.ndarray, policy_options: dict, word_ms: int = 200) -> tuple[list, DialogueSession]:
    """A silence policy with a short threshold (it takes over a 1 s pause), the ASR hearing the
    speech runs only (the counting stand-in would count words in silence too)."""
    policy = create("silence", {"silence_ms": 300.0, **policy_options})
    return await play_on_stand_ins(track, policy, DialogueSettings(asr_silence_tail_ms=0.0), word_ms)


def _words(text: str) -> list[str]:
    return [w.strip(".,?!").lower() for w in text.split()]


def _of(events, kind) -> list:
    return [(t, e) for t, e in events if isinstance(e, kind)]


def _paused_turn() -> tuple[np.ndarray, float]:
    """FIRST, a 1 s pause, REST: the track and where REST starts (s)."""
    first = speech(FIRST)
    resumed = 0.3 + len(first) / 16000 + 1.0
    return np.concatenate([silence(0.3), first, silence(1.0), speech(REST), silence(2.5)]), resumed


async def test_the_user_going_on_after_a_takeover_makes_the_agent_yield_and_the_whole_turn_is_answered():
    track, resumed = _paused_turn()
    events, s = await _dialogue(track, {})
    (t_start, _), (t_start2, _) = _of(events, AgentTurnStartEvent)
    assert t_start < resumed  # the agent took over the pause...
    (t_cut, cut), = _of(events, InterruptedEvent)
    # ...and yields once the user has gone on for 300 ms, not after 1.2 s or 3 words
    assert cut.turn == 1 and cut.user_continues and resumed < t_cut <= resumed + CONTINUE_S
    assert not _of(events, AgentResumeEvent)
    assert not [e for t, e in _of(events, AgentAudioEvent) if e.turn == 1 and t > t_cut]
    # the first decision answered the first part; the second carries the whole turn
    first, whole = [e.text for _, e in _of(events, UserTurnEndEvent)]
    assert whole.startswith(first) and len(whole.split()) > len(first.split())
    # the LLM answered the whole turn as one turn (the stand-in says the turn's words back), and
    # nothing of the withdrawn false start is left in its answer
    answer = "".join(e.text for _, e in _of(events, AgentTextEvent) if e.turn == 2)
    assert answer == whole and t_start2 > resumed
    assert s.llm.stream.made == len(whole.split())  # all the words it ever answered: the whole turn once
    assert s.summary()["user_continued"] == 1 and s.summary()["interruptions"] == 1


async def test_a_backchannel_later_in_the_answer_still_pauses_and_resumes_it():
    """The same pause taken over, the user silent through it and then "Right." 1.5 s into the
    agent's voice (slow tone speech makes the answer long): past ``continue_window_ms`` it is a
    backchannel, as before."""
    first = speech(FIRST)
    events, s = await _dialogue(np.concatenate([silence(0.3), first, silence(6.0)]), {}, word_ms=800)
    (t_start, _), = _of(events, AgentTurnStartEvent)
    at = int(round((t_start + 1.5) * 16000))
    track = np.concatenate([silence(0.3), first, silence(6.0)])
    clip = speech("Right.")
    track[at:at + len(clip)] += clip
    events, s = await _dialogue(track, {}, word_ms=800)
    assert len(_of(events, AgentPauseEvent)) == 1 and len(_of(events, AgentResumeEvent)) == 1
    assert not _of(events, InterruptedEvent) and len(_of(events, UserTurnEndEvent)) == 1
    assert s.summary()["resumed_after_backchannel"] == 1 and s.summary()["user_continued"] == 0


async def test_with_the_window_off_the_takeover_goes_on_as_before():
    """``continue_window_ms`` None: the user's going on is speech over the agent like any other:
    the agent pauses, yields only once the words reach ``interrupt_words``, keeps its false start
    as heard, and the rest of the turn is answered as a new turn without its first part (the
    cooking script's "Great, [agent] thanks for the help" before this setting)."""
    track, resumed = _paused_turn()
    events, s = await _dialogue(track, {"continue_window_ms": None})
    (t_cut, cut), = _of(events, InterruptedEvent)
    assert _of(events, AgentPauseEvent) and not cut.user_continues and t_cut > resumed + 0.5
    first, rest = [e.text for _, e in _of(events, UserTurnEndEvent)]
    assert not rest.startswith(first) and s.summary()["user_continued"] == 0


@pytest.mark.model
async def test_on_the_real_parts_the_llm_answers_the_whole_turn_and_never_saw_the_false_start():
    """Whisper tiny.en and SmolLM2: "I would like to know" [1 s, taken over] "how far away the
    moon is." The LLM's history holds the whole question as one user turn, then its answer to it;
    nothing of the withdrawn answer to the first part."""
    d = Dialogue(create("silence", {"silence_ms": 400.0}), ToneTtsModel(word_ms=200), max_new_tokens=8)
    track, resumed = _paused_turn()
    await d.play(track)
    run = await d.close()
    (cut,) = run.of(InterruptedEvent)
    assert cut.user_continues and run.time_of(InterruptedEvent) <= resumed + CONTINUE_S
    whole = run.of(UserTurnEndEvent)[-1].text
    assert _words(whole) == _words(f"{FIRST} {REST}")
    history = d.session.llm.stream.history
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert _words(history[0]["content"]) == _words(whole) and run.agent_text(2).startswith(history[1]["content"])
    assert history[1]["content"] and run.agent_text(1)  # the withdrawn one had words (they are gone)
