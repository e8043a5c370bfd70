"""The voice agent's session on the real parts (Whisper tiny.en, SmolLM2, silero VAD; TTS: the
ToneTtsModel stand-in) in virtual time: the user's question is transcribed and answered after the
end of the turn, never during a 1 s mid-turn pause; the agent's audio is paced 200 ms ahead of
playback; a barge-in stops it within the bound and keeps only what was heard in the LLM's context;
a short backchannel does not interrupt."""

from __future__ import annotations

import numpy as np
import pytest

from policies.turn_taking.registry import create
from streamrt.dialogue.events import AgentAudioEvent, AgentTurnEndEvent, AgentTurnStartEvent, DialogueEndEvent
from streamrt.testing import ToneTtsModel
from tests.streamrt.dialogue.dialogue_helpers import Dialogue, silence, speech

pytestmark = pytest.mark.model

QUESTION = "What is the capital of France?"


def _words(text: str) -> list[str]:
    return [w.strip(".,?!").lower() for w in text.split()]


async def test_question_is_transcribed_and_answered_after_the_end_of_the_turn():
    d = Dialogue(create("semantic"), ToneTtsModel(word_ms=200))
    q = speech(QUESTION)
    spoken_end = 0.5 + len(q) / 16000
    await d.play(np.concatenate([silence(0.5), q, silence(3.0)]))
    run = await d.close()
    assert _words(run.user_text()) == _words(QUESTION)
    start = run.time_of(AgentTurnStartEvent, 1)
    assert start is not None and spoken_end < start < spoken_end + 0.8  # answers promptly, not before the end
    answer = run.of(AgentTurnEndEvent)[0].text
    assert answer == run.agent_text(1) and "paris" in _words(answer)
    # the audio is all there, in order, and paced: never more than audio_lead_ms ahead of playback
    audio = [(t, e) for t, e in run.events if isinstance(e, AgentAudioEvent)]
    assert [e.offset_ms for _, e in audio] == sorted(e.offset_ms for _, e in audio)
    assert run.audio_ms(1) == pytest.approx(200 * len(answer.split()), abs=1)
    for t, e in audio:
        ahead_ms = e.offset_ms + 1000 * len(e.samples) / e.sample_rate - 1000 * (t - start)
        assert ahead_ms <= 200 + 32 + 1e-6  # the lead, plus the 32 ms between two events() calls
    assert isinstance(run.events[-1][1], DialogueEndEvent)


@pytest.mark.parametrize("policy", ["semantic", pytest.param("silence", marks=pytest.mark.slow)])
async def test_a_one_second_mid_turn_pause_is_not_taken_over(policy):
    d = Dialogue(create(policy), ToneTtsModel(word_ms=200))
    first, rest = speech("I would like to know"), speech("the capital of France.")
    resumed = 0.5 + len(first) / 16000 + 1.0
    await d.play(np.concatenate([silence(0.5), first, silence(1.0), rest, silence(3.0)]))
    run = await d.close()
    start = run.time_of(AgentTurnStartEvent, 1)
    assert start is not None and start > resumed + len(rest) / 16000  # after the whole turn, not in the pause
    assert len(run.of(AgentTurnStartEvent)) == 1
    assert "france" in _words(run.user_text())
