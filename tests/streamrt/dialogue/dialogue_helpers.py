"""The real parts of the voice agent, loaded once per test process (Whisper tiny.en, the packaged
SmolLM2, silero VAD; the TTS stand-in ``ToneTtsModel``), user turns synthesized with espeak-ng
(16 kHz, cached per process), and a driver that plays a user track to a ``DialogueSession`` in
virtual time: a ManualClock moves 32 ms per fed frame and the scheduler runs to idle in between
(compute is free: the turn-taking and pacing logic is what is tested)."""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from streamrt.audio import load_audio
from streamrt.clock import ManualClock
from streamrt.dialogue.events import (AgentAudioEvent, AgentPauseEvent, AgentTextEvent, AgentTurnEndEvent,
                                      AgentTurnStartEvent, DialogueEndEvent, InterruptedEvent, UserCommitEvent)
from streamrt.dialogue.models import DialogueModels
from streamrt.dialogue.session import DialogueSession
from streamrt.dialogue.settings import DialogueSettings
from streamrt.scheduler import Scheduler, SchedulerSettings
from tests.streamrt.llm_model import smollm2, smollm2_lm

SR = 16000
FRAME_S = 0.032
NO_WAIT = SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=None)


@functools.cache
def _synth_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="streamrt-dialogue-clips-"))


@functools.cache
def speech(text: str, tool: str = "flite") -> np.ndarray:
    """``text`` spoken by flite (voice slt) or espeak-ng (en-us), 16 kHz mono float32, without the
    synthesizer's leading and trailing silence, cached per process."""
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (make apt-test)")
    out = _synth_dir() / f"{tool}-{abs(hash(text))}.wav"
    cmd = (["flite", "-voice", "slt", "-t", text, "-o", str(out)] if tool == "flite"
           else ["espeak-ng", "-v", "en-us", "-w", str(out), text])
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    audio = load_audio(out)
    loud = np.flatnonzero(np.abs(audio) > 0.01)  # trimmed: the pauses a test makes are the pauses heard
    return audio[loud[0]:loud[-1] + 1]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * SR)), np.float32)


@functools.cache
def asr_model():
    from streamrt.models.whisper.packages import locate
    from streamrt.presets import load_model

    try:
        locate("tiny.en")
    except Exception as exc:
        pytest.skip(str(exc))
    return load_model("tiny.en")


@functools.cache
def hibari_model():
    """The real TTS (hibari, 24 kHz), seeded so its audio repeats."""
    from streamrt.errors import ModelLoadError
    from streamrt.models.tts.load import load_tts
    from streamrt.tasks.tts import TtsModel, TtsSettings

    try:
        return TtsModel(load_tts("hibari"), TtsSettings(seed=0))
    except ModelLoadError as exc:
        pytest.skip(str(exc))


@functools.cache
def vad_model():
    from streamrt.models.vad import load_vad

    return load_vad("silero")


def llm_model(max_new_tokens: int = 24):
    from streamrt.decoding.llm_batch import DecoderSettings, LlmDecoder
    from streamrt.decoding.llm_sampling import SamplingSettings
    from streamrt.tasks.llm_conversation import ConversationSettings, LlmConversationModel

    decoder = LlmDecoder.from_bundle(smollm2(), DecoderSettings(max_slots=2, max_context_tokens=512), lm=smollm2_lm())
    return LlmConversationModel(smollm2(), decoder,
                                ConversationSettings(sampling=SamplingSettings(max_new_tokens=max_new_tokens)))


@dataclass
class Run:
    """What a dialogue emitted, each event with the virtual time (s) it came out."""

    events: list[tuple[float, object]] = field(default_factory=list)

    def of(self, kind) -> list:
        return [e for _, e in self.events if isinstance(e, kind)]

    def time_of(self, kind, turn: int | None = None) -> float | None:
        for t, e in self.events:
            if isinstance(e, kind) and (turn is None or e.turn == turn):
                return t
        return None

    def last_audio_time(self, turn: int) -> float | None:
        times = [t for t, e in self.events if isinstance(e, AgentAudioEvent) and e.turn == turn]
        return max(times) if times else None

    def user_text(self) -> str:
        return " ".join(e.text for e in self.of(UserCommitEvent))

    def agent_text(self, turn: int) -> str:
        return "".join(e.text for e in self.of(AgentTextEvent) if e.turn == turn)

    def audio_ms(self, turn: int) -> float:
        """The turn's audio as a client plays it: to the end of its last frame (a frame sent again
        after ``agent_resume`` starts where the pause rewound to, inside what was sent before)."""
        return max((e.offset_ms + 1000.0 * len(e.samples) / e.sample_rate for e in self.of(AgentAudioEvent)
                    if e.turn == turn), default=0.0)


class Dialogue:
    """A session on the real parts with a scheduler in virtual time; ``play`` feeds a track."""

    def __init__(self, policy, tts, settings: DialogueSettings = DialogueSettings(), max_new_tokens: int = 24,
                 echo_gain: float = 0.0):
        self.clock = ManualClock()
        self.models = DialogueModels(asr=asr_model(), llm=llm_model(max_new_tokens), tts=tts, vad=vad_model())
        self.sched = Scheduler(clock=self.clock, settings=NO_WAIT)
        self.models.add_to(self.sched)
        self.session = DialogueSession(self.models, self.sched, self.clock, policy, settings=settings)
        self.run = Run()
        self._started = False
        self.echo_gain = echo_gain  # the agent's voice leaking back into the microphone
        self._echo = np.zeros(0, np.float32)
        self._to_16k = None

    async def play(self, track: np.ndarray, *, until=None) -> Run:
        """Feed ``track`` in 32 ms frames in real time; stop early once ``until(run)`` holds."""
        if not self._started:
            await self.sched.start()
            self._started = True
        n = int(FRAME_S * SR)
        for i in range(0, len(track), n):
            frame = track[i:i + n].copy()
            if self.echo_gain:  # what the speaker plays now reaches the microphone
                echo, self._echo = self._echo[:len(frame)], self._echo[len(frame):]
                frame[:len(echo)] += self.echo_gain * echo
            self.session.receive_audio(frame)
            await self._settle()
            self.clock.advance(FRAME_S)
            self._collect()
            if until is not None and until(self.run):
                break
        return self.run

    def _collect(self) -> None:
        for e in self.session.events():
            self.run.events.append((self.clock.now(), e))
            if self.echo_gain and isinstance(e, AgentAudioEvent):
                if self._to_16k is None:
                    from streamrt.audio import StreamResampler

                    self._to_16k = StreamResampler(e.sample_rate, SR)
                self._echo = np.concatenate([self._echo, self._to_16k(e.samples)])
            if self.echo_gain and isinstance(e, (AgentPauseEvent, InterruptedEvent)):
                self._echo = self._echo[:0]  # the client drops what it buffered

    async def _settle(self) -> None:
        for _ in range(1000):
            await asyncio.sleep(0)
            await self.sched.wait_idle()
            self._collect()
            if self.sched.idle:
                return

    async def close(self) -> Run:
        self.session.receive_eof()
        await self._settle()
        self._collect()
        await self.sched.stop()
        return self.run


async def play_on_stand_ins(track: np.ndarray, policy, settings: DialogueSettings, tts_word_ms: int
                            ) -> tuple[list[tuple[float, object]], DialogueSession]:
    """``track`` played to a session on stand-ins (CountingModel ASR: a word per 300 ms of audio,
    EchoTextModel LLM: it answers a turn with the turn's words, ToneTtsModel TTS: ``tts_word_ms``
    of tone per word; the real silero VAD) in real time, 32 ms frames with the scheduler idle in
    between, then its end: the events with the virtual time (s) they came out, and the session."""
    from streamrt.models.vad import load_vad
    from streamrt.testing import CountingModel, EchoTextModel, ToneTtsModel

    clock = ManualClock()
    models = DialogueModels(asr=CountingModel(word_ms=300, chunk_ms=160, hold_ms=200), llm=EchoTextModel(),
                            tts=ToneTtsModel(word_ms=tts_word_ms), vad=load_vad())
    sched = Scheduler(clock=clock, settings=NO_WAIT)
    models.add_to(sched)
    await sched.start()
    s = DialogueSession(models, sched, clock, policy, settings=settings)
    events = []
    n = int(FRAME_S * SR)
    for i in range(0, len(track), n):
        s.receive_audio(track[i:i + n])
        await asyncio.sleep(0)
        await sched.wait_idle()
        clock.advance(FRAME_S)
        events += [(clock.now(), e) for e in s.events()]
    s.receive_eof()
    await sched.wait_idle()
    events += [(clock.now(), e) for e in s.events()]
    await sched.stop()
    assert isinstance(events[-1][1], DialogueEndEvent)
    return events, s


__all__ = ["AgentAudioEvent", "AgentTurnEndEvent", "AgentTurnStartEvent", "Dialogue", "InterruptedEvent",
           "Run", "play_on_stand_ins", "silence", "speech"]
