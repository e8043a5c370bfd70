"""A stand-in voice agent for the transport tests (no models): it "hears" a user turn as a run of
loud audio followed by ``pause_ms`` of silence, answers each with ``answer_ms`` of a tone, released in
100 ms pieces as its clock passes them (as the real session paces audio), and ends after ``stop``
once its answer is out. It implements ``DialogueAgent`` / ``DialogueCore`` as the real ones do."""

from __future__ import annotations

import numpy as np

from streamrt.clock import Clock, MonotonicClock
from streamrt.dialogue.events import (
    AgentAudioEvent,
    AgentPauseEvent,
    AgentResumeEvent,
    AgentTextEvent,
    AgentTurnEndEvent,
    AgentTurnStartEvent,
    DialogueEndEvent,
    InterruptedEvent,
    UserCommitEvent,
)
from streamrt.errors import ConfigError

RATE = 24000


def tone_piece(k: int) -> np.ndarray:
    """The ``k``-th 100 ms piece of every answer: a 440 Hz tone, continuous across pieces."""
    return (0.3 * np.sin(2 * np.pi * 440 * (np.arange(RATE // 10) + k * RATE // 10) / RATE)).astype(np.float32)


class ToneSession:
    def __init__(self, clock: Clock, pause_ms: float, answer_ms: float, greeting: str | None):
        self.clock = clock
        self.pause_ms = pause_ms
        self.answer_ms = answer_ms
        self.received_ms = 0.0
        self.loud_ms = 0.0  # loud audio in the current user turn
        self.quiet_ms = 0.0  # silence since it
        self.turn = 0
        self.playback: list[tuple[int, float]] = []
        self.frames: list[float] = []  # times of the camera frames received
        self.closed = False
        self._eof = False
        self._ended = False
        self._events: list = []
        self._answer: tuple[float, int] | None = None  # (clock time it started, pieces released)
        self._paused: tuple[int, float] | None = None  # (pieces released, position) at a pause
        if greeting:
            self._start_answer(greeting)

    @property
    def ended(self) -> bool:
        return self._ended

    def receive_audio(self, samples: np.ndarray) -> None:
        ms = 1000.0 * len(samples) / 16000
        self.received_ms += ms
        if np.abs(samples).max(initial=0.0) > 0.05:
            self.loud_ms += ms
            self.quiet_ms = 0.0
        elif self.loud_ms:
            self.quiet_ms += ms
            if self.quiet_ms >= self.pause_ms and self._answer is None:
                self._events.append(UserCommitEvent(f"spoke {self.loud_ms / 1000:.1f} s", self.received_ms))
                self.loud_ms = self.quiet_ms = 0.0
                self._start_answer("Hello there.")

    def _start_answer(self, text: str) -> None:
        self.turn += 1
        self._answer = (self.clock.now(), 0)
        self._text = text
        self._events.append(AgentTurnStartEvent(self.turn, self.received_ms))
        self._events.append(AgentTextEvent(self.turn, text, self.received_ms))

    def interrupt(self, heard: str, speech_start_ms: float | None = None) -> None:
        """The user barged in (their speech heard from ``speech_start_ms``): the answer stops,
        ``InterruptedEvent`` says what was heard."""
        self._answer = None
        self._events.append(InterruptedEvent(self.turn, heard, self.received_ms, speech_start_ms))

    def pause(self) -> float:
        """The user may be barging in: ``AgentPauseEvent`` at the playback position (by the clock
        since the answer started), and nothing more released; returns that position."""
        t0, done = self._answer
        position = min(100.0 * done, 1000.0 * (self.clock.now() - t0))
        self._answer = None
        self._paused = (done, position)
        self._events.append(AgentPauseEvent(self.turn, round(position, 1), self.received_ms))
        return position

    def resume(self) -> float:
        """It was not a barge-in: ``AgentResumeEvent`` from the start of the 100 ms piece playing at the
        pause, and the pieces from there released again (paced from now); returns that position."""
        _, position = self._paused
        piece = int(position // 100)
        self._answer = (self.clock.now() - piece * 0.1, piece)
        self._events.append(AgentResumeEvent(self.turn, 100.0 * piece, self.received_ms))
        return 100.0 * piece

    def receive_playback(self, turn: int, position_ms: float) -> None:
        self.playback.append((turn, position_ms))

    def receive_video(self, frame) -> None:
        self.frames.append(frame.time_ms)

    def receive_eof(self) -> None:
        self._eof = True

    def close(self) -> None:
        self.closed = True

    def events(self) -> list:
        if self._answer is not None:
            t0, done = self._answer
            pieces = int(self.answer_ms // 100)
            due = min(pieces, int((self.clock.now() - t0) / 0.1) + 2)  # 200 ms ahead of playback
            for k in range(done, due):
                self._events.append(AgentAudioEvent(self.turn, tone_piece(k), RATE, 100.0 * k))
            self._answer = (t0, due)
            if due == pieces:
                self._events.append(AgentTurnEndEvent(self.turn, self._text, self.received_ms))
                self._answer = None
        if self._eof and self._answer is None and not self._ended:
            self._ended = True
            self._events.append(DialogueEndEvent(self.received_ms, {"turns": self.turn}))
        out, self._events = self._events, []
        return out


def stand_in_agent(lips=None, turn_policy: str = "silence"):
    """The real ``VoiceAgent`` and ``DialogueSession`` on stand-in models (CountingModel ASR,
    EchoTextModel LLM, ToneTtsModel TTS; the real silero VAD) and ``lips``: (asr, agent); serve
    ``asr`` as the server's model (the dialogues' ASR is the server's)."""
    from streamrt.dialogue.models import DialogueModels
    from streamrt.models.vad import load_vad
    from streamrt.server.agent import AgentSettings, VoiceAgent
    from streamrt.testing import CountingModel, EchoTextModel, ToneTtsModel

    asr = CountingModel(word_ms=300)
    models = DialogueModels(asr=asr, llm=EchoTextModel(), tts=ToneTtsModel(word_ms=100), vad=load_vad(), lips=lips)
    return asr, VoiceAgent(models, MonotonicClock(), AgentSettings(turn_policy=turn_policy))


class ToneAgent:
    output_sample_rate = RATE
    scores_video = False

    def __init__(self, clock: Clock | None = None, pause_ms: float = 300.0, answer_ms: float = 500.0,
                 max_dialogues: int | None = None):
        self.max_dialogues = max_dialogues
        self.clock = clock or MonotonicClock()
        self.pause_ms = pause_ms
        self.answer_ms = answer_ms
        self.sessions: list[ToneSession] = []

    def models(self) -> dict:
        return {}

    def new_session(self, options, *, scheduler, session_id, on_update=None):
        if options.get("turn_policy", "silence") != "silence":
            raise ConfigError(f"unknown turn policy {options['turn_policy']!r}; installed: silence")
        s = ToneSession(self.clock, self.pause_ms, self.answer_ms, options.get("greeting"))
        self.sessions.append(s)
        return s

    def describe(self) -> dict:
        return {"agent": "tone"}
