"""The interface between sessions and models: a shared model, one stream of state per session.

This is sherpa-onnx's split (``recognizer.create_stream()``, ``recognizer.decode_streams([...])``):

    model = SomeStreamingModel(...)              # shared weights, loaded once
    stream = model.create_stream(options)        # per-session state (features, caches, policy)
    stream.accept_audio(samples)                 # 16 kHz mono float32
    while stream.is_ready():
        model.step([stream])                     # or many ready streams of many sessions at once
    result = stream.pop_result()                 # committed drafts + current partial

``step`` is the only method that runs the network; the scheduler calls it from a worker thread with
the ready streams of many sessions. Nothing here reads a clock: the Session times steps with its
injected clock and turns drafts into ``Unit``s with media delay and elapsed time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class UnitDraft:
    """A unit the model has committed, before the session stamps its delays.

    start_ms/end_ms: position in the source audio; consumed_ms: source the model had consumed when
    it decided to commit (the unit's media delay).
    """

    text: str
    start_ms: float
    end_ms: float
    consumed_ms: float


@dataclass
class StepResult:
    committed: list[UnitDraft] = field(default_factory=list)
    partial: str | None = None  # None: unchanged since the last pop


@runtime_checkable
class ModelStream(Protocol):
    """Per-session model state. Created by ``StreamingModel.create_stream``; never shared."""

    def accept_audio(self, samples: np.ndarray) -> None:
        """Append mono float32 samples at the model's sample rate."""

    def input_finished(self) -> None:
        """No more audio will come; the next steps flush and commit everything."""

    def is_ready(self) -> bool:
        """True when a step would do work (enough new audio, or a flush is pending)."""

    def is_done(self) -> bool:
        """True after input_finished() once every unit is committed."""

    @property
    def received_ms(self) -> float:
        """Media received so far."""

    @property
    def consumed_ms(self) -> float:
        """Media the model has processed so far (received_ms - consumed_ms is the backlog)."""

    def pop_result(self) -> StepResult:
        """Committed drafts since the last pop, and the current partial text."""


@runtime_checkable
class StreamingModel(Protocol):
    """Shared weights. ``step`` advances every given stream by one step, batched where it can.

    Threads: the scheduler runs ``step`` in a worker thread, one step at a time, while transports
    call ``create_stream`` on the event loop. So ``create_stream`` may run during a ``step`` and
    must only build the new session's own state (it may read the shared weights and settings,
    never write what ``step`` uses); ``step`` is never called concurrently with itself, and a
    stream is never fed while it is inside a step (the session holds input aside meanwhile)."""

    sample_rate: int

    def create_stream(self, options: Mapping[str, object] | None = None) -> ModelStream:
        """A new session's stream; raises ConfigError / policy errors for bad ``options``."""
        ...

    def step(self, streams: Sequence[ModelStream]) -> None:
        ...


class SampleCounts:
    """The bookkeeping half of ``ModelStream``, shared by implementations: samples received and
    consumed at the model's rate (``self.model.sample_rate``) and the end-of-input flag. The
    subclass sets ``model`` and counts in ``accept_audio`` and its steps."""

    model: StreamingModel
    _received: int = 0  # samples
    _consumed: int = 0
    _finished: bool = False

    def input_finished(self) -> None:
        self._finished = True

    @property
    def received_ms(self) -> float:
        return 1000.0 * self._received / self.model.sample_rate

    @property
    def consumed_ms(self) -> float:
        return 1000.0 * self._consumed / self.model.sample_rate
