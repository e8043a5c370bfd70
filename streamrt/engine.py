"""The interface between sessions and models: a shared model, one stream of state per session.

This is sherpa-onnx's split (``recognizer.create_stream()``, ``recognizer.decode_streams([...])``),
for any kind of model (speech recognition, a text LLM, TTS, a visual encoder):

    model = SomeStreamingModel(...)              # shared weights, loaded once
    stream = model.create_stream(options)        # per-session state (features, caches, policy)
    stream.accept(item)                          # a typed input: AudioChunk, TextDelta, VideoFrame
    while stream.is_ready():
        model.step([stream])                     # or many ready streams of many sessions at once
    result = stream.pop_result()                 # committed text, partial, tokens, audio
    stream.cancel()                              # between steps: drop its work, free its slot

The inputs are the frozen dataclasses of ``streamrt.types``; a stream lists the kinds it takes in
``input_kinds`` and the session refuses (or, for video, drops) the others. ``step`` is the only
method that runs the network; the scheduler calls it from a worker thread with the ready streams
of many sessions. Nothing here reads a clock: sessions time steps with their injected clock.

Audio models add their bookkeeping on top: an ``AudioModel`` has a ``sample_rate`` and its
``AudioStream`` counts media received and consumed (``received_ms``, ``consumed_ms``), which the
captioning ``Session`` uses for its buffer limit and the scheduler for real-time pacing.
``SampleCounts`` implements that half for audio streams; ``StreamBase`` the generic defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Mapping, Protocol, Sequence, Union, runtime_checkable

import numpy as np

from streamrt.errors import InputError
from streamrt.types import (AudioChunk, Finalize, LipActivity, ReplyHeard, StepPending, TextDelta, VideoFrame,
                            WithdrawReply)

StreamInput = Union[AudioChunk, TextDelta, VideoFrame, ReplyHeard, StepPending, Finalize, WithdrawReply]
"""What a stream accepts (``ModelStream.accept``)."""


@dataclass(frozen=True)
class UnitDraft:
    """A unit the model has committed, before the session stamps its delays.

    start_ms/end_ms: position in the source media; consumed_ms: source the model had consumed when
    it decided to commit (the unit's media delay). Text models give the position in their output.
    """

    text: str
    start_ms: float
    end_ms: float
    consumed_ms: float


@dataclass
class StepResult:
    """What steps produced since the last ``pop_result``. Any part may be empty.

    committed: units committed (never retracted); partial: the current uncommitted text, None when
    unchanged since the last pop; tokens: token ids generated (a text decoder); audio: samples
    generated, mono float32 at the model's output rate (a TTS), None when none; lips: one
    ``LipActivity`` per video frame scored (a visual encoder), in frame order. frame_scores: one
    score per input frame of a frame classifier, in order (a VAD's speech probability per frame).
    end_of_turn: a text model's reply is complete (its turn ended). end_of_turn_p: a text model's
    probability that the input so far ends the user's turn, when asked (``TextDelta.score_end``).
    """

    committed: list[UnitDraft] = field(default_factory=list)
    partial: str | None = None
    tokens: list[int] = field(default_factory=list)
    audio: np.ndarray | None = None
    lips: list[LipActivity] = field(default_factory=list)
    frame_scores: list[float] = field(default_factory=list)
    end_of_turn: bool = False
    end_of_turn_p: float | None = None

    def __bool__(self) -> bool:
        """Whether anything was produced."""
        return bool(self.committed or self.partial is not None or self.tokens or self.audio is not None
                    or self.lips or self.frame_scores or self.end_of_turn or self.end_of_turn_p is not None)


@dataclass(frozen=True)
class Urgency:
    """How soon a stream's next step is needed (the scheduler orders work by it).

    budget_ms: the stream's step is due this long after it became ready; None: the scheduler's
    ``latency_budget_ms``. priority: among streams that all still have slack, the higher goes
    first (an interactive LLM turn waiting on its first token above an ASR stream); a stream
    about to miss its deadline goes first whatever its priority.
    """

    budget_ms: float | None = None
    priority: int = 0

    def __post_init__(self) -> None:
        if self.budget_ms is not None and not self.budget_ms > 0:
            raise ValueError(f"Urgency.budget_ms must be > 0 ms or None, got {self.budget_ms}")


@runtime_checkable
class ModelStream(Protocol):
    """Per-session model state. Created by ``StreamingModel.create_stream``; never shared.

    A stream is never touched by two threads at once: while it is inside a ``step`` its session
    holds new input aside."""

    input_kinds: ClassVar[frozenset[type]]
    """The input types ``accept`` takes (e.g. ``frozenset({AudioChunk})``)."""

    def accept(self, item: StreamInput) -> None:
        """Take one typed input. Raises ``InputError`` for a kind it does not take or a bad item
        (the stream's state is left as it was)."""

    def input_finished(self) -> None:
        """No more input will come; the next steps flush and commit everything."""

    def cancel(self) -> None:
        """Drop pending input and output and release what the model holds for this stream (e.g. a
        KV-cache slot); afterwards ``is_ready()`` is False and ``is_done()`` True. Called between
        steps only (the scheduler calls it at the next step boundary)."""

    def is_ready(self) -> bool:
        """True when a step would do work (enough new input, a flush pending, tokens to generate)."""

    def is_done(self) -> bool:
        """True after input_finished() once everything is committed, or after cancel()."""

    def urgency(self) -> Urgency:
        """How urgent its next step is now (may change with the stream's state)."""

    def pop_result(self) -> StepResult:
        """What the steps produced since the last pop."""


@runtime_checkable
class AudioStream(ModelStream, Protocol):
    """A stream of an audio model: audio goes in at the model's rate, media time is counted."""

    def accept_audio(self, samples: np.ndarray) -> None:
        """Append mono float32 samples at the model's sample rate."""

    @property
    def received_ms(self) -> float:
        """Media received so far."""

    @property
    def consumed_ms(self) -> float:
        """Media the model has processed so far (received_ms - consumed_ms is the backlog)."""

    def steps_pending(self) -> bool:
        """A ``StepPending`` or ``Finalize`` it took is still to be stepped (always False for a
        stream that takes neither)."""


@runtime_checkable
class StreamingModel(Protocol):
    """Shared weights. ``step`` advances every given stream by one step, batched where it can.

    Threads: the scheduler runs ``step`` in a worker thread, one step at a time (one step of one
    model at a time on the machine), while transports call ``create_stream`` on the event loop.
    So ``create_stream`` may run during a ``step`` and must only build the new session's own state
    (it may read the shared weights and settings, never write what ``step`` uses); ``step`` is
    never called concurrently with itself, and a stream is never fed while it is inside a step.
    A step that fails for one stream should raise before it mutates any (or raise
    ``ModelStepError`` naming the stream as ``exc.stream``), so the others can be retried."""

    def create_stream(self, options: Mapping[str, object] | None = None) -> ModelStream:
        """A new session's stream; raises ConfigError / policy errors for bad ``options``."""
        ...

    def step(self, streams: Sequence[ModelStream]) -> None:
        ...


@runtime_checkable
class AudioModel(StreamingModel, Protocol):
    """A model whose streams take audio at ``sample_rate`` (Hz)."""

    sample_rate: int

    def create_stream(self, options: Mapping[str, object] | None = None) -> AudioStream:
        ...


@runtime_checkable
class Describable(Protocol):
    """A model that reports its configuration (preset, precision and why) as JSON-able settings;
    servers repeat it in the ``ready`` message and /healthz."""

    def describe(self) -> dict: ...


class StreamBase:
    """The generic half of ``ModelStream`` for implementations to inherit: cancellation, default
    urgency, and ``accept`` refusing every kind (subclasses handle theirs and call up for the rest).
    A subclass checks ``cancelled`` in ``is_ready`` / ``is_done``."""

    input_kinds: ClassVar[frozenset[type]] = frozenset()
    cancelled: bool = False

    def accept(self, item: StreamInput) -> None:
        takes = ", ".join(sorted(k.__name__ for k in self.input_kinds)) or "nothing"
        raise InputError(f"{type(self).__name__} takes {takes}, not {type(item).__name__}", code="unsupported_input")

    def cancel(self) -> None:
        self.cancelled = True

    def urgency(self) -> Urgency:
        return Urgency()


class SampleCounts(StreamBase):
    """The bookkeeping half of ``AudioStream``, shared by implementations: samples received and
    consumed at the model's rate (``self.model.sample_rate``) and the end-of-input flag. The
    subclass sets ``model`` and counts in ``accept_audio`` and its steps. ``accept`` takes
    ``AudioChunk`` at the model's rate, and ``StepPending`` / ``Finalize`` where the subclass lists
    them in ``input_kinds`` (its ``is_ready`` then counts ``steps_pending()``; its steps take
    ``samples_to_take`` and, after the step that ``ends_segment``, call ``begin_segment``)."""

    input_kinds: ClassVar[frozenset[type]] = frozenset({AudioChunk})
    model: AudioModel
    _received: int = 0  # samples
    _consumed: int = 0
    _finished: bool = False
    _step_to: int = 0  # samples: a ``StepPending`` asks for steps until this many are consumed
    _final_to: int | None = None  # samples: a ``Finalize`` ends the segment here (None: none asked)
    _segment_from: int = 0  # samples: where the current segment began
    _final_context: bool = True  # the pending Finalize's ``context``

    def accept(self, item: StreamInput) -> None:
        if isinstance(item, StepPending) and StepPending in self.input_kinds:
            self._step_to = self._received
        elif isinstance(item, Finalize) and Finalize in self.input_kinds:
            if self._received > self._segment_from:  # else there is nothing to finalise
                self._final_to, self._final_context = self._received, item.context
        elif not isinstance(item, AudioChunk):
            super().accept(item)
        elif item.sample_rate != self.model.sample_rate:
            raise InputError(f"audio at {item.sample_rate} Hz; this model takes {self.model.sample_rate} Hz",
                             code="bad_sample_rate")
        else:
            self.accept_audio(item.samples)

    def accept_audio(self, samples: np.ndarray) -> None:
        raise NotImplementedError

    def input_finished(self) -> None:
        self._finished = True

    def steps_pending(self) -> bool:
        """A ``StepPending`` asked for audio that is not consumed yet, or a ``Finalize`` for a step
        not run yet (``is_ready`` counts it; someone waits on the words)."""
        return self._consumed < self._step_to or self._final_to is not None

    def samples_to_take(self, chunk: int) -> int:
        """Samples the next step consumes: up to ``chunk`` of those received, and not past a
        pending ``Finalize`` (the audio after it belongs to the next segment)."""
        end = self._received if self._final_to is None else self._final_to
        return max(0, min(chunk, end - self._consumed))

    def ends_input(self) -> bool:
        """Input ended and every sample is consumed: this step is the stream's last."""
        return self._finished and self._consumed >= self._received

    def ends_segment(self) -> bool:
        """A ``Finalize`` is pending and every sample before it is consumed: this step commits
        the segment's words as final (the end of input does too: ``ends_input``)."""
        return self._final_to is not None and self._consumed >= self._final_to

    def segment_context(self) -> bool:
        """Whether the segment that ends now leaves its text as the next one's context
        (``Finalize.context``)."""
        return self._final_context

    def begin_segment(self) -> None:
        """The step that ended a segment ran: the audio from here on is the next one's."""
        self._segment_from, self._final_to = self._consumed, None

    @property
    def received_ms(self) -> float:
        return 1000.0 * self._received / self.model.sample_rate

    @property
    def consumed_ms(self) -> float:
        return 1000.0 * self._consumed / self.model.sample_rate
