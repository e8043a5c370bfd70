"""Speech out as a scheduler task: the agent's text in, its audio out, clause by clause.

    voice = load_tts("hibari")                        # shared: one onnxruntime session
    model = TtsModel(voice)                           # sample_rate 24000
    sched.add_model(model, name="tts")
    speech = StreamSession(model.create_stream(), clock)   # one stream per agent turn
    sched.add(speech, model=model)
    speech.receive(TextDelta("Paris is the capital"))      # LLM text as it comes
    speech.receive(TextDelta(" of France. It is", end_of_turn=False))
    speech.receive(TextDelta(" big.", end_of_turn=True))   # no more text: speak the rest

A stream speaks its text in chunks (``tts_chunks.next_chunk_end``): sentence by sentence, the
turn's first sentence clause by clause and its first chunk after a few words (``ChunkRules``), so
the first audio comes early. Each step
synthesizes one chunk per stream; ``pop_result`` gives the audio (``StepResult.audio``, float32 at
``sample_rate``, appended in order) and one ``UnitDraft`` per chunk whose ``start_ms``/``end_ms``
are its position in the stream's output audio and whose ``text`` is what it says. That maps a
playback position to the words heard. ``end_of_turn`` (or ``input_finished``) speaks the rest; the
stream is then done once it is all spoken and takes no more text. ``cancel`` drops the text not yet
spoken. A ``TextDelta`` may rewrite text not yet spoken (``replace_from`` at or after the spoken
part), never what was.

Urgency: the turn's first chunk is interactive (``first_chunk_budget_ms``, priority above ASR
streams, like the LLM's first token); later chunks have ``chunk_budget_ms``, which the audio
already out covers while it plays.

Batching: hibari's ONNX graph takes one utterance per forward (``streamrt.models.tts.load``), so a
step over several streams synthesizes their chunks one after another; it synthesizes all of them
before it changes any stream, so a failing stream leaves the others as they were (the scheduler
retries them without it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Mapping, Sequence

import numpy as np

from streamrt.engine import StepResult, StreamBase, StreamInput, UnitDraft, Urgency
from streamrt.errors import ConfigError, InputError, ModelStepError
from streamrt.models.tts.voice import TtsVoice
from streamrt.tasks.tts_chunks import ChunkRules, next_chunk_end
from streamrt.types import TextDelta

FIRST_CHUNK_PRIORITY = 1  # as the LLM's first token: the user is waiting for the answer to start
CHUNK_PRIORITY = 0


@dataclass(frozen=True)
class TtsSettings:
    """first_chunk_budget_ms: a turn's first chunk is due this long after it became ready;
    chunk_budget_ms: each later chunk (None: the scheduler's ``latency_budget_ms``). speed: the
    voice's pace (1.0 normal, 0.5-2.0). seed: the voice's noise (None: fresh each stream; a number
    makes a stream's audio repeatable). rules: where chunks end."""

    first_chunk_budget_ms: float | None = 150.0
    chunk_budget_ms: float | None = 1000.0
    speed: float = 1.0
    seed: int | None = None
    rules: ChunkRules = ChunkRules()

    def __post_init__(self) -> None:
        for name in ("first_chunk_budget_ms", "chunk_budget_ms"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ConfigError(f"{name} must be > 0 ms or None, got {v!r}")
        if not (isinstance(self.speed, (int, float)) and 0.5 <= self.speed <= 2.0):
            raise ConfigError(f"TTS speed must be within 0.5-2.0 (1.0 is normal), got {self.speed!r}")


OPTIONS = ("speed", "seed")


class TtsModel:
    """Shared: the voice. ``create_stream`` options: ``speed`` (0.5-2.0), ``seed`` (int)."""

    def __init__(self, voice: TtsVoice, settings: TtsSettings = TtsSettings()):
        self.voice = voice
        self.settings = settings
        self.sample_rate = voice.sample_rate
        self.steps = 0
        self.chunks = 0

    def create_stream(self, options: Mapping[str, object] | None = None) -> TtsStream:
        options = dict(options or {})
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"unknown TTS options {unknown}; known: {', '.join(OPTIONS)}")
        settings = replace(self.settings, **options) if options else self.settings
        return TtsStream(self, settings)

    def describe(self) -> dict:
        return self.voice.describe()

    def step(self, streams: Sequence[TtsStream]) -> None:
        spoken = []
        for s in streams:  # synthesize every chunk before changing any stream
            end = s._chunk_end()
            if end is None:  # not ready (the scheduler steps only ready streams)
                spoken.append(None)
                continue
            text = s.text[s.spoken:end].strip()
            try:
                audio = self.voice.synthesize(text, speed=s.settings.speed, rng=s.rng) if text else None
            except Exception as exc:
                err = ModelStepError(f"TTS could not speak {text[:60]!r}: {exc}")
                err.stream = s
                raise err from exc
            spoken.append((end, text, audio))
        self.steps += 1
        for s, chunk in zip(streams, spoken):
            if chunk is not None:
                s._add(*chunk)
                self.chunks += 1


class TtsStream(StreamBase):
    """One agent turn's speech: the text received, how much of it is spoken, the audio made."""

    input_kinds: ClassVar[frozenset[type]] = frozenset({TextDelta})

    def __init__(self, model: TtsModel, settings: TtsSettings):
        self.model = model
        self.settings = settings
        self.rng = np.random.default_rng(settings.seed)
        self.text = ""  # all text received (TextDelta positions count in it)
        self.spoken = 0  # characters of ``text`` already spoken (chunked and synthesized)
        self.samples = 0  # output samples made so far
        self.chunks = 0
        self._final = False  # end of turn: no more text
        self._audio: list[np.ndarray] = []
        self._out: list[UnitDraft] = []

    # ---- input (between this stream's steps) ---------------------------------------------------
    def accept(self, item: StreamInput) -> None:
        if not isinstance(item, TextDelta):
            return super().accept(item)
        if self._final and (item.text or item.replace_from is not None):
            raise InputError("text after the end of the turn: a TTS stream speaks one turn; start a new "
                             "stream for the next", code="bad_text")
        self.text = item.apply(self.text, answered_to=self.spoken)
        if item.end_of_turn:
            self._final = True

    def input_finished(self) -> None:
        self._final = True

    def cancel(self) -> None:
        super().cancel()
        self.spoken = len(self.text)  # nothing more is said

    # ---- state ---------------------------------------------------------------------------------
    def _chunk_end(self) -> int | None:
        return next_chunk_end(self.text, self.spoken, first=self.samples == 0, final=self._final,
                              rules=self.settings.rules)

    def is_ready(self) -> bool:
        return not self.cancelled and self._chunk_end() is not None

    def is_done(self) -> bool:
        return self.cancelled or (self._final and not self.text[self.spoken:].strip())

    @property
    def audio_ms(self) -> float:
        """Audio made so far (ms of output)."""
        return 1000.0 * self.samples / self.model.sample_rate

    def urgency(self) -> Urgency:
        if self.samples == 0:
            return Urgency(self.settings.first_chunk_budget_ms, FIRST_CHUNK_PRIORITY)
        return Urgency(self.settings.chunk_budget_ms, CHUNK_PRIORITY)

    def pop_result(self) -> StepResult:
        audio = np.concatenate(self._audio) if self._audio else None
        out = StepResult(self._out, None, [], audio)
        self._audio, self._out = [], []
        return out

    # ---- inside model.step ---------------------------------------------------------------------
    def _add(self, end: int, text: str, audio: np.ndarray | None) -> None:
        self.spoken = end
        self.chunks += 1
        if not text:
            return
        start_ms = self.audio_ms
        if audio is not None and len(audio):
            self._audio.append(audio)
            self.samples += len(audio)
        self._out.append(UnitDraft(text, start_ms, self.audio_ms, self.audio_ms))
