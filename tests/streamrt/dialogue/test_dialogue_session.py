"""The voice agent's session on the real parts (Whisper tiny.en, SmolLM2, silero VAD, hibari TTS;
the ToneTtsModel stand-in where exact audio lengths make the check) in virtual time: the user's
question is transcribed and answered aloud after the end of the turn, never during a 1 s mid-turn
pause; the agent's audio is paced 200 ms ahead of playback; a barge-in stops it within the bound and
keeps only what was heard in the LLM's context; a short backchannel does not interrupt, nor does
the agent's own voice leaking back into the microphone."""

from __future__ import annotations

import numpy as np
import pytest

from streamrt.audio import StreamResampler
from streamrt.clock import ManualClock
from streamrt.evaluation.runner import stream_one
from policies.turn_taking.registry import create
from streamrt.dialogue.events import (AgentAudioEvent, AgentPauseEvent, AgentTurnEndEvent, AgentTurnStartEvent,
                                      DialogueEndEvent, InterruptedEvent, UserCommitEvent, UserTurnEndEvent)
from streamrt.dialogue.settings import DialogueSettings
from streamrt.testing import ToneTtsModel
from tests.streamrt.dialogue.dialogue_helpers import Dialogue, asr_model, hibari_model, silence, speech

pytestmark = pytest.mark.model

QUESTION = "What is the capital of France?"


def _words(text: str) -> list[str]:
    return [w.strip(".,?!").lower() for w in text.split()]


async def test_question_is_transcribed_and_answered_aloud_after_the_end_of_the_turn():
    d = Dialogue(create("semantic"), hibari_model())
    q = speech(QUESTION)
    spoken_end = 0.5 + len(q) / 16000
    await d.play(np.concatenate([silence(0.5), q, silence(4.0)]))
    run = await d.close()
    assert _words(run.user_text()) == _words(QUESTION)
    start = run.time_of(AgentTurnStartEvent, 1)
    assert start is not None and spoken_end < start < spoken_end + 0.8  # answers promptly, not before the end
    answer = run.of(AgentTurnEndEvent)[0].text
    assert answer == run.agent_text(1) and "paris" in _words(answer)
    # the audio is all there, in order, and paced: never more than audio_lead_ms ahead of playback
    audio = [(t, e) for t, e in run.events if isinstance(e, AgentAudioEvent)]
    offsets = [e.offset_ms for _, e in audio]
    assert offsets == sorted(offsets) and offsets[0] == 0
    for t, e in audio:
        ahead_ms = e.offset_ms + 1000 * len(e.samples) / e.sample_rate - 1000 * (t - start)
        assert ahead_ms <= 200 + 32 + 1e-6  # the lead, plus the 32 ms between two events() calls
    # what the agent said aloud is its text: Whisper hears "Paris" in it
    voice = np.concatenate([e.samples for _, e in audio])
    heard = stream_one(asr_model(), StreamResampler(audio[0][1].sample_rate, 16000)(voice, last=True), {},
                       feed_ms=500, clock=ManualClock())
    assert "paris" in _words(" ".join(u.text for u in heard.committed))
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
    # the ASR finalised the first part at the pause; the resumed words continue the same turn
    assert [_words(e.text) for e in run.of(UserTurnEndEvent)] == [_words("I would like to know the capital of France.")]


async def test_the_turns_last_words_are_committed_when_the_vad_hears_the_user_stop():
    """At the end of a speech run (``hangover_ms`` of silence) the ASR commits the run's words at
    once (``Finalize``: a step over the audio it holds, the whole hypothesis written), rather than
    holding the last word until the next step's audio shows it is over (AlignAtt) or the policy
    answers. Compute is free here, so the commit comes with the VAD frame that ends the run."""
    d = Dialogue(create("semantic"), ToneTtsModel(word_ms=200), max_new_tokens=8)
    q = speech(QUESTION)
    spoken_end = 0.5 + len(q) / 16000
    await d.play(np.concatenate([silence(0.5), q, silence(2.0)]))
    run = await d.close()
    commits = [(t, e) for t, e in run.events if isinstance(e, UserCommitEvent)]
    assert _words(" ".join(e.text for _, e in commits)) == _words(QUESTION)
    decided = run.time_of(UserTurnEndEvent)
    assert commits[-1][0] <= spoken_end + DialogueSettings().hangover_ms / 1000 + 0.1 < decided


STORY = "Tell me a long story about a brave little dragon."


def _after(run, kind, turn, delay_s):
    """until= for Dialogue.play: ``delay_s`` after the first ``kind`` event of ``turn``."""
    def done(r):
        t = r.time_of(kind, turn)
        return t is not None and r.events[-1][0] >= t + delay_s
    return done


async def test_barge_in_stops_the_agent_within_the_bound_and_keeps_only_what_was_heard():
    d = Dialogue(create("semantic"), ToneTtsModel(word_ms=300), max_new_tokens=48)
    await d.play(np.concatenate([silence(0.3), speech(STORY), silence(8.0)]),
                 until=_after(d.run, AgentTurnStartEvent, 1, 1.5))
    interruption = speech("Wait, stop. Tell me about the capital of Germany instead.")
    onset = d.clock.now()
    await d.play(np.concatenate([interruption, silence(4.0)]))
    run = await d.close()
    (cut,) = [e for e in run.of(InterruptedEvent) if e.turn == 1]
    t_cut = run.time_of(InterruptedEvent, 1)
    assert onset < t_cut <= onset + 1.5  # yields by min_interrupt_ms (1.2 s) of speech, or 3 words
    # its audio stopped at once: nothing released after the guard heard the user (<= 200 ms)
    assert run.last_audio_time(1) <= onset + 0.2
    said = run.agent_text(1)
    assert said.startswith(cut.heard_text) and cut.heard_text != said
    (pause,) = [e for e in run.of(AgentPauseEvent) if e.turn == 1]  # the client stopped there, before the cut
    assert run.time_of(AgentPauseEvent, 1) <= onset + 0.3 and pause.position_ms <= run.audio_ms(1)
    assert abs(len(cut.heard_text.split()) - pause.position_ms / 300) <= 1.0  # the words played before the pause
    assert not [e for e in run.of(AgentTurnEndEvent) if e.turn == 1]
    # only what was heard stayed in the LLM's context, and the interruption was answered as a new turn
    history = d.session.llm.stream.history
    assert history[1] == {"role": "assistant", "content": cut.heard_text}
    assert "germany" in _words(history[2]["content"])
    assert run.time_of(AgentTurnStartEvent, 2) is not None


async def test_a_backchannel_does_not_interrupt_and_is_not_answered():
    d = Dialogue(create("semantic"), ToneTtsModel(word_ms=300), max_new_tokens=32)
    await d.play(np.concatenate([silence(0.3), speech(STORY), silence(8.0)]),
                 until=_after(d.run, AgentTurnStartEvent, 1, 1.0))
    await d.play(np.concatenate([speech("Okay."), silence(12.0)]), until=lambda r: r.of(AgentTurnEndEvent)
                 and r.events[-1][0] > r.time_of(AgentTurnEndEvent, 1) + 2.0)
    run = await d.close()
    assert run.of(InterruptedEvent) == []
    (end,) = run.of(AgentTurnEndEvent)
    assert end.text == run.agent_text(1) and run.audio_ms(1) == pytest.approx(300 * len(end.text.split()), abs=1)
    assert len(run.of(AgentTurnStartEvent)) == 1  # "okay" got no answer
    assert d.session.summary()["resumed_after_backchannel"] == 1
    assert "okay" not in d.session.llm.stream.text.lower()  # nor is it left in the LLM's next turn


@pytest.mark.slow
async def test_the_agents_own_voice_leaking_back_does_not_interrupt_it():
    """The echo guard: the agent's real voice (hibari) fed back into the microphone at a fifth of
    its level (-14 dB)."""
    d = Dialogue(create("semantic"), hibari_model(), max_new_tokens=24, echo_gain=0.2)
    await d.play(np.concatenate([silence(0.3), speech(STORY), silence(15.0)]),
                 until=lambda r: r.of(AgentTurnEndEvent) and r.events[-1][0] > r.time_of(AgentTurnEndEvent, 1) + 1.0)
    run = await d.close()
    assert run.of(InterruptedEvent) == [] and len(run.of(AgentTurnStartEvent)) == 1
    assert run.of(AgentTurnEndEvent)[0].text == run.agent_text(1)


async def test_the_turn_is_answered_with_every_word_of_its_speech_none_spill_into_the_next():
    """The demo's turn 2: the words of the ASR's last, short chunk were not transcribed when the
    policy said Speak ("what language do people"), and came out with the next turn's speech (the
    gate stopped sending audio 1 s after the speech, so the chunk waited for the next). The end of
    the speech run finalises the ASR's audio at once and the turn is answered whole. Here the ASR
    steps 2 s of audio (as the scheduler's degradation ladder may set it under load), more than
    the question's last chunk ever holds."""
    d = Dialogue(create("semantic"), ToneTtsModel(word_ms=100), max_new_tokens=8)
    question, thanks = "And what language do people speak there?", "Thank you."
    asr = d.models.asr
    chunk_ms = asr.chunk_ms
    asr.set_chunk_ms(2000)
    try:
        await d.play(np.concatenate([silence(0.5), speech(question), silence(4.0), speech(thanks), silence(3.0)]))
        run = await d.close()
    finally:
        asr.set_chunk_ms(chunk_ms)
    turns = run.of(UserTurnEndEvent)
    assert [_words(t.text) for t in turns] == [_words(question), _words(thanks)]
