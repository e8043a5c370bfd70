"""The dialogue runner in virtual time, against a scripted stand-in agent (the real session's run is
tests/streamrt/test_cli_dialogue.py). The stand-in answers after 600 ms of silence with 2 s of
tone released in 100 ms chunks at most 200 ms ahead of playback, and stops after 300 ms of user
voice over its speech: so it takes over 1 s pauses, and a backchannel of >= 300 ms stops it."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest

from metrics.dialogue import DialogueLog, dialogue_scores
from streamrt.cli.dialogue import format_table
from streamrt.clock import ManualClock
from streamrt.dialogue.events import (
    AgentAudioEvent,
    AgentTextEvent,
    AgentTurnEndEvent,
    AgentTurnStartEvent,
    DialogueEndEvent,
    InterruptedEvent,
    UserCommitEvent,
    UserTurnEndEvent,
)
from streamrt.evaluation.dialogue import RunnerSettings, ScriptRun, UserTrack, VirtualClock, run_script
from streamrt.evaluation.dialogue_report import agent_speech, agent_wer, report
from streamrt.evaluation.dialogue_script import ClipSynth, Overlay, Script, ScriptTurn

pytestmark = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")

FRAME = 320  # 20 ms at 16 kHz


class StandInAgent:
    def __init__(self, clock, silence_ms=600.0, barge_ms=300.0, answer_ms=2000.0):
        self.clock, self.silence_ms, self.barge_ms, self.answer_ms = clock, silence_ms, barge_ms, answer_ms
        self.received = 0
        self.voiced_at: float | None = None  # last voiced input, ms
        self.voice_run = 0.0  # ms of voice in a row
        self.user_spoke = False
        self.turn = 0
        self.speaking_since: float | None = None  # ms (clock) of the turn's first release
        self.released = 0.0
        self.out: list = []
        self.eof = False
        self.ended = False

    def _ms(self):
        return 1000.0 * self.clock.now()

    def receive_audio(self, samples):
        for i in range(0, len(samples) - FRAME + 1, FRAME):
            self.received += FRAME
            loud = float(np.sqrt(np.mean(samples[i:i + FRAME] ** 2))) > 0.01
            t = 1000.0 * self.received / 16000
            self.voice_run = self.voice_run + 20.0 if loud else 0.0
            if loud:
                self.voiced_at, self.user_spoke = t, True

    def receive_eof(self):
        self.eof = True

    def close(self):
        self.closed = True

    def events(self):
        now = self._ms()
        if self.speaking_since is not None and self.voice_run >= self.barge_ms:
            self.out.append(InterruptedEvent(self.turn, "", now))
            self.speaking_since = None
            self.user_spoke = True
        if self.speaking_since is None and self.user_spoke and self.voiced_at is not None \
                and 1000.0 * self.received / 16000 - self.voiced_at >= self.silence_ms:
            self.turn += 1
            self.user_spoke = False
            self.out += [UserCommitEvent("words", now), UserTurnEndEvent("words", now),
                         AgentTextEvent(self.turn, "la la", now), AgentTurnStartEvent(self.turn, now)]
            self.speaking_since, self.released = now, 0.0
        if self.speaking_since is not None:
            while self.released < self.answer_ms and self.released < now - self.speaking_since + 200.0:
                tone = np.full(2400, 0.1, dtype=np.float32)  # 100 ms at 24 kHz
                self.out.append(AgentAudioEvent(self.turn, tone, 24000, self.released))
                self.released += 100.0
            if self.released >= self.answer_ms and now - self.speaking_since >= self.answer_ms:
                self.out.append(AgentTurnEndEvent(self.turn, "la la", now))
                self.speaking_since = None
        if self.eof and not self.ended:
            self.out.append(DialogueEndEvent(now))
            self.ended = True
        out, self.out = self.out, []
        return out


class Idle:
    idle = True

    async def wait_progress(self):
        return None


def _run(script, tmp_path):
    clock = VirtualClock("none")
    agent = StandInAgent(clock)
    run = asyncio.run(run_script(script, agent, Idle(), clock, ClipSynth(tmp_path / "clips"),
                                 RunnerSettings(answer_timeout_s=10.0)))
    return run


def test_turns_pauses_backchannels_and_interruptions_in_virtual_time(tmp_path):
    script = Script("s", "slt", (
        ScriptTurn(("What is the capital of France?",)),
        ScriptTurn(("I would like to know", "how far away the moon is.")),
        ScriptTurn(("Why is the sky blue?",), backchannel=Overlay("okay, I see", 500)),
        ScriptTurn(("Tell me a story.",), interrupt=Overlay("Wait, a short one please.", 800)),
    ), gap_ms=1000)
    run = _run(script, tmp_path)
    kinds = [u.kind for u in run.log.user]
    assert kinds == ["turn", "turn", "turn", "backchannel", "turn", "interruption"]
    first = run.log.user[0]
    assert first.onset_ms == pytest.approx(1000, abs=20)  # gap_ms of silence opens the dialogue
    assert first.offset_ms - first.onset_ms == pytest.approx(1000 * len(ClipSynth(tmp_path / "clips")(
        "What is the capital of France?", "slt")) / 16000, abs=1)
    assert run.log.user[1].pauses[0][1] - run.log.user[1].pauses[0][0] == pytest.approx(1000)
    bc = run.log.user[3]
    answer3 = [e for e in run.log.events if e.type == "agent_audio"]
    s = dialogue_scores([run.log])
    # 600 ms after the voice ends by its 20 ms frames (the trimmed clip ends in a quiet 10 ms frame)
    assert 560 <= s["response_onset_p50_ms"] <= 640 and s["unanswered"] == 0
    assert s["pause_takeover_rate"] == 1.0  # 600 ms of silence < the 1 s pause
    assert s["false_barge_in_rate"] == 1.0 and s["backchannels"] == 1
    assert 300 <= s["barge_in_p50_ms"] <= 340 and s["barge_in_missed"] == 0
    assert s["tts_first_chunk_p50_ms"] == 0 and s["llm_ttft_p50_ms"] == 0
    assert bc.onset_ms >= answer3[0].time_ms
    assert len(run.interrupted) == 3  # the pause takeover, the backchannel and the interruption


def test_agent_wer_pairs_completed_turns_with_their_text(tmp_path):
    script = Script("s", "slt", (ScriptTurn(("Hello there.",)),), gap_ms=500)
    run = _run(script, tmp_path)
    speech = agent_speech([run])
    assert len(speech) == 1 and speech[0][1] == 24000 and speech[0][2] == "la la"
    assert len(speech[0][0]) == 2000 * 24  # the whole answer, in order
    heard = []
    out = agent_wer(speech, lambda x: heard.append(len(x)) or "la la la")
    assert heard == [2000 * 16]  # resampled to 16 kHz
    assert out["agent_wer"] == pytest.approx(50.0)
    rep = report([run], out, {"x": 1})
    assert [g["key"] for g in rep["goals"]][:2] == ["response_onset_p50_ms", "response_onset_p90_ms"]
    assert rep["scores"]["turns"] == 1 and rep["scores"]["pause_takeover_rate"] is None  # no pause: null
    table = format_table(rep).splitlines()
    assert table[0] == "| measure | goal | ours |"
    assert "| Whisper WER of the agent's speech against its text | <= 10 % | 50.0 % (not met) |" in table
    assert "| pause takeover on 1 s mid-turn pauses | <= 10 % | n/a |" in table
    assert "| user turns answered | | 1 / 1 |" in table


def test_agent_speech_puts_audio_sent_again_after_a_resume_in_place():
    # 0-100 ms and 100-200 ms sent, paused, resumed from 50 ms: 50-250 ms sent again
    x = np.arange(6000, dtype=np.float32)  # 250 ms at 24 kHz, each sample its index
    chunks = [(0.0, x[:2400], 24000), (100.0, x[2400:4800], 24000), (50.0, x[1200:6000], 24000)]
    run = ScriptRun(DialogueLog("d", (), ()), {1: chunks}, {1: "la"}, set(), 1.0, 0.0)
    ((audio, rate, text),) = agent_speech([run])
    assert rate == 24000 and text == "la" and np.array_equal(audio, x)


def test_user_track_mixes_overlapping_clips_and_is_silent_elsewhere():
    track = UserTrack()
    track.place(2, np.ones(3, dtype=np.float32))
    track.place(4, np.full(2, 0.5, dtype=np.float32))
    assert track.read(0, 8).tolist() == [0, 0, 1, 1, 1.5, 0.5, 0, 0]
    assert track.end == 6


def test_virtual_clock_moves_by_skipped_time_plus_compute():
    clock = VirtualClock("none")
    clock.advance(0.5)
    assert clock.now() == 0.5
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)
    busy = VirtualClock("process")
    x = 0
    for i in range(200000):
        x += i
    assert busy.now() > 0 and busy.compute_s() == pytest.approx(busy.now(), abs=1e-3)
    assert isinstance(ManualClock().now(), float)


def test_the_log_keeps_whether_an_interrupted_turn_was_withdrawn_for_the_user_going_on(tmp_path):
    from streamrt.evaluation.dialogue import _timed

    went_on = _timed(1000.0, InterruptedEvent(2, "Sure", 900.0, 850.0, user_continues=True))
    barge_in = _timed(2000.0, InterruptedEvent(3, "The", 1900.0, 1850.0))
    assert went_on.data["user_continues"] is True and barge_in.data["user_continues"] is False
    assert (went_on.type, went_on.turn, went_on.text) == ("interrupted", 2, "Sure")
