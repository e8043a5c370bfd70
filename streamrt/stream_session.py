"""A sans-I/O session around any ``ModelStream``: typed input in, step results out, cancellable.

    session = StreamSession(model.create_stream(), clock)
    session.receive(TextDelta("hello", end_of_turn=True))   # any kind in stream.input_kinds
    session.run_until_blocked(model)     # or, under the scheduler: begin_step / complete_step
    for event in session.events(): ...   # StepOutput, ErrorEvent, EndEvent
    session.cancel()                     # the stream drops its work; the session ends

It is what the scheduler drives (``streamrt.scheduler``): ``ready``, ``begin_step``,
``complete_step``, ``finish_if_done``, ``fail``, ``cancel``. While a step runs (in a worker thread),
input is staged and handed to the stream when the step completes, so a stream is never touched by
two threads at once. The captioning ``Session`` (``streamrt.session``) is this with audio
conversion, limits and timed units on top.

The feed path never raises: bad input becomes an ``ErrorEvent``; a fatal one closes the session,
after which everything already produced is still delivered.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from streamrt.clock import Clock
from streamrt.engine import ModelStream, StepResult, StreamInput, StreamingModel
from streamrt.errors import InputError, SessionClosed, StreamrtError
from streamrt.types import EndEvent, ErrorEvent

_ids = itertools.count(1)


@dataclass(frozen=True)
class StepOutput:
    """What a step gave a generic session: the stream's result and the compute spent on the
    session so far (ms, the session's own clock)."""

    result: StepResult
    compute_ms: float
    type: str = "output"


class StreamSession:
    def __init__(self, stream: ModelStream, clock: Clock, *, session_id: str | None = None):
        self.id = session_id or f"s{next(_ids)}"
        self.stream = stream
        self.clock = clock
        self._events: list = []
        self._compute_s = 0.0
        self._eof = False
        self._ended = False
        self.cancelled = False
        self._cancel_pending = False
        # input held while a model step runs (see begin_step); handed over by complete_step
        self._stepping = False
        self._staged: list[StreamInput] = []
        self._staged_eof = False

    # ---- input -------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """No more input is taken (eof, cancel, or a fatal error)."""
        return self._eof

    @property
    def ended(self) -> bool:
        return self._ended

    def receive(self, item: StreamInput) -> None:
        """One typed input (a kind in ``stream.input_kinds``); errors become events."""
        try:
            if self._eof:
                raise SessionClosed(f"{type(item).__name__} after end of stream is ignored")
            if type(item) not in self.stream.input_kinds:
                takes = ", ".join(sorted(k.__name__ for k in self.stream.input_kinds)) or "nothing"
                raise InputError(f"this stream takes {takes}, not {type(item).__name__}", code="unsupported_input")
            self._to_stream(item)
        except StreamrtError as e:
            self._error(e)

    def _to_stream(self, item: StreamInput) -> None:
        if self._stepping:
            self._staged.append(item)
        else:
            self.stream.accept(item)

    def _unstage(self) -> None:
        staged, self._staged = self._staged, []
        for item in staged:
            try:
                self.stream.accept(item)
            except StreamrtError as e:
                self._error(e)
        self._after_unstage()
        if self._staged_eof:
            self._staged_eof = False
            self.stream.input_finished()

    def _after_unstage(self) -> None:
        """Hook: staged input was handed to the stream."""

    def receive_eof(self) -> None:
        """No more input; the stream flushes, and the session ends once everything is out."""
        if self._eof:
            return
        self._eof = True
        self._before_eof()
        if self._stepping:
            self._staged_eof = True
        else:
            self.stream.input_finished()
            self._maybe_end()  # nothing left to step: end now, not on a step that never comes

    def _before_eof(self) -> None:
        """Hook: the last input may be flushed to the stream here."""

    def cancel(self) -> None:
        """Stop now: the stream drops its pending work and frees what it holds (its slot), and the
        session ends with what it already produced. During a step, at the step's end (the next
        step boundary). Idempotent."""
        if self._ended or self.cancelled:
            return
        self._eof = True
        if self._stepping:
            self._cancel_pending = True
            return
        self._cancel_now()

    def _cancel_now(self) -> None:
        self._cancel_pending = False
        self._staged, self._staged_eof = [], False
        self.stream.cancel()
        self.cancelled = True
        self._maybe_end()

    def fail(self, error: StreamrtError) -> None:
        """Report an error found outside the session (a transport, or a failed model step) and end
        if fatal. Ends a step begun with ``begin_step`` that will not complete."""
        if self._stepping:
            self._stepping = False
            self._unstage()
        self._error(error)
        if self._cancel_pending:
            self._cancel_now()

    # ---- model work --------------------------------------------------------------------------
    @property
    def in_step(self) -> bool:
        """A model step on this session's stream is in flight (between ``begin_step`` and
        ``complete_step``)."""
        return self._stepping

    def ready(self) -> bool:
        return not self._ended and not self._stepping and self.stream.is_ready()

    def step(self, model: StreamingModel) -> None:
        """Run one model step for this session alone and collect its output (synchronous driver)."""
        self.begin_step()
        t0 = self.clock.now()
        model.step([self.stream])
        self.complete_step(self.clock.now() - t0)

    def begin_step(self) -> ModelStream:
        """Mark a model step on this session's stream as started (the scheduler calls it on the
        event loop before handing the stream to a worker thread). Until ``complete_step`` (or
        ``fail``), new input is staged instead of reaching the stream. Returns the stream."""
        self._stepping = True
        return self.stream

    def complete_step(self, compute_s: float) -> None:
        """Collect the stream's output after a (possibly batched) step that took ``compute_s``;
        a cancel asked for during the step happens now."""
        self._stepping = False
        self._unstage()
        self._compute_s += compute_s
        self._collect(self.stream.pop_result())
        if self._cancel_pending:
            self._cancel_now()
        self._maybe_end()

    def _collect(self, result: StepResult) -> None:
        if result:
            self._events.append(StepOutput(result, self.compute_ms))

    def finish_if_done(self) -> bool:
        """End the session now if input ended and the stream needs no further step (emits the
        EndEvent); never runs the model. Returns whether the session has ended."""
        self._maybe_end()
        return self._ended

    def run_until_blocked(self, model: StreamingModel) -> None:
        while self.ready():
            self.step(model)
        self._maybe_end()

    # ---- output ------------------------------------------------------------------------------
    def events(self) -> list:
        out, self._events = self._events, []
        return out

    @property
    def compute_ms(self) -> float:
        return 1000.0 * self._compute_s

    def _maybe_end(self) -> None:
        if self._eof and not self._ended and not self._stepping and self.stream.is_done():
            self._ended = True
            self._events.append(self._end_event())

    def _end_event(self) -> EndEvent:
        return EndEvent((), 0.0, {"compute_ms": round(self.compute_ms, 1), "cancelled": self.cancelled})

    def _error(self, e: StreamrtError) -> None:
        self._events.append(ErrorEvent(e.code, e.message, e.fatal))
        if e.fatal and not self._eof:
            self.receive_eof()
