"""A sans-I/O streaming session (the shape of websockets' ``Protocol``).

Input goes in with ``receive_audio`` / ``receive_pcm`` / ``receive_video`` / ``receive_eof``;
model work happens in ``step`` (or, under the scheduler, ``model.step`` on many streams followed by
``complete_step`` on each session); output comes out of ``events()``. No sockets, no event loop, no
clock reads except through the injected ``Clock``.

The feed path never raises: bad input becomes an ``ErrorEvent``; a fatal one closes the session,
after which everything already committed is still delivered with the ``EndEvent``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from streamrt.audio import StreamResampler, check_format, decode_pcm, downmix
from streamrt.clock import Clock
from streamrt.engine import ModelStream, StreamingModel
from streamrt.errors import InputError, LimitExceeded, SessionClosed, StreamrtError
from streamrt.types import CommitEvent, EndEvent, ErrorEvent, Event, PartialEvent, Unit, VideoFrame

_ids = itertools.count(1)


@dataclass(frozen=True)
class SessionLimits:
    """Per-session limits; ``None`` disables one.

    max_buffered_audio_s: seconds of audio received but not yet processed by the model. Past it the
        client is sending faster than the model keeps up (or never stops): the chunk is refused with
        ``buffer_full`` and not appended; the session goes on.
    max_stream_s: total seconds of audio one session may send (the session is closed past it).
    """

    max_buffered_audio_s: float | None = 30.0
    max_stream_s: float | None = 4 * 3600.0


class Session:
    def __init__(
        self,
        stream: ModelStream,
        clock: Clock,
        *,
        model_sample_rate: int = 16000,
        input_sample_rate: int = 16000,
        input_channels: int = 1,
        limits: SessionLimits = SessionLimits(),
        session_id: str | None = None,
    ):
        check_format("pcm_f32le", input_sample_rate, input_channels)
        self.id = session_id or f"s{next(_ids)}"
        self.stream = stream
        self.clock = clock
        self.limits = limits
        self.model_sample_rate = model_sample_rate
        self.input_sample_rate = input_sample_rate
        self.input_channels = input_channels
        self._resample = StreamResampler(input_sample_rate, model_sample_rate)
        self._events: list[Event] = []
        self._committed: list[Unit] = []
        self._partial = ""
        self._compute_s = 0.0
        self._eof = False
        self._ended = False
        self._received_input_samples = 0
        self.video_frames = 0
        # While a model step runs (possibly in a worker thread, see begin_step), input is staged
        # here and handed to the stream when the step completes: a ModelStream is never touched
        # by two threads at once.
        self._stepping = False
        self._staged: list[np.ndarray] = []
        self._staged_samples = 0
        self._staged_eof = False
        self._staged_video: list[VideoFrame] = []

    # ---- input -------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._eof

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def backlog_s(self) -> float:
        """Seconds of audio received but not yet consumed by the model (``max_buffered_audio_s``
        bounds it): a sender that may go faster than real time keeps it under the limit."""
        return (self.stream.received_ms - self.stream.consumed_ms) / 1000 + self._staged_samples / self.model_sample_rate

    def receive_pcm(self, data: bytes, encoding: str) -> None:
        """Raw PCM bytes in the session's input rate/channels; errors become events."""
        try:
            x = decode_pcm(data, encoding, self.input_channels)
        except StreamrtError as e:
            self._error(e)
            return
        self.receive_audio(x)

    def receive_audio(self, samples: np.ndarray) -> None:
        """(frames,) or (frames, channels) float samples at the input rate, appended at the end."""
        try:
            self._accept(samples)
        except StreamrtError as e:
            self._error(e)

    def _accept(self, samples: np.ndarray) -> None:
        if self._eof:
            raise SessionClosed("audio after end of stream is ignored")
        try:
            x = np.asarray(samples, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise InputError(f"audio must be an array of numbers: {e}", code="bad_samples") from None
        if x.ndim == 1 and self.input_channels > 1:
            raise InputError(
                f"got 1-D audio, the session was started with {self.input_channels} channels: "
                "send (frames, channels)",
                code="bad_channels",
            )
        if not np.all(np.isfinite(x)):
            raise InputError("audio contains NaN or infinity", code="bad_samples")
        if x.ndim == 2 and x.shape[1] != self.input_channels:
            raise InputError(
                f"got {x.shape[1]} channels, the session was started with {self.input_channels}",
                code="bad_channels",
            )
        if x.ndim not in (1, 2):
            raise InputError(f"audio must be 1-D or 2-D, got shape {x.shape}", code="bad_audio_shape")
        n_in = x.shape[0]
        lim = self.limits
        if lim.max_stream_s is not None:
            total_s = (self._received_input_samples + n_in) / self.input_sample_rate
            if total_s > lim.max_stream_s:
                raise LimitExceeded("max_stream_s", lim.max_stream_s, total_s, "s", what="stream length", fatal=True)
        if lim.max_buffered_audio_s is not None:
            backlog_s = self.backlog_s + n_in / self.input_sample_rate
            if backlog_s > lim.max_buffered_audio_s:
                raise LimitExceeded(
                    "max_buffered_audio_s",
                    lim.max_buffered_audio_s,
                    backlog_s,
                    "s",
                    what="audio buffered ahead of the model (chunk dropped)",
                    code="buffer_full",
                )
        self._received_input_samples += n_in
        self._to_stream(self._resample(downmix(x)))

    def _to_stream(self, samples: np.ndarray) -> None:
        if self._stepping:
            self._staged.append(samples)
            self._staged_samples += len(samples)
        else:
            self.stream.accept_audio(samples)

    def _unstage(self) -> None:
        staged, self._staged, self._staged_samples = self._staged, [], 0
        for x in staged:
            self.stream.accept_audio(x)
        video, self._staged_video = self._staged_video, []
        for frame in video:
            self._to_stream_video(frame)
        if self._staged_eof:
            self._staged_eof = False
            self.stream.input_finished()

    def receive_video(self, frame: VideoFrame) -> None:
        """Video frames flow to models that take them (``accept_video``); others count and drop them."""
        self.video_frames += 1
        accept = getattr(self.stream, "accept_video", None)
        if accept is None or self._eof:
            return
        if self._stepping:  # never touch the stream while a worker thread steps it
            self._staged_video.append(frame)
        else:
            self._to_stream_video(frame)

    def _to_stream_video(self, frame: VideoFrame) -> None:
        try:
            self.stream.accept_video(frame)
        except StreamrtError as e:
            self._error(e)

    def receive_eof(self) -> None:
        if self._eof:
            return
        self._eof = True
        tail = self._resample(np.zeros(0, np.float32), last=True)
        if len(tail):
            self._to_stream(tail)
        if self._stepping:
            self._staged_eof = True
        else:
            self.stream.input_finished()
            self._maybe_end()  # nothing left to step: end now, not on a step that never comes

    def fail(self, error: StreamrtError) -> None:
        """Report an error found outside the session (a transport, or a failed model step) and end
        if fatal. Ends a step begun with ``begin_step`` that will not complete."""
        if self._stepping:
            self._stepping = False
            self._unstage()
        self._error(error)

    # ---- model work --------------------------------------------------------------------------
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
        """Collect the stream's output after a (possibly batched) step that took ``compute_s``."""
        self._stepping = False
        self._unstage()
        self._compute_s += compute_s
        result = self.stream.pop_result()
        compute_ms = 1000.0 * self._compute_s
        if result.committed:
            units = tuple(
                Unit(d.text, d.start_ms, d.end_ms, d.consumed_ms, d.consumed_ms + compute_ms)
                for d in result.committed
            )
            self._committed.extend(units)
            self._events.append(CommitEvent(units))
        if result.partial is not None and result.partial != self._partial:
            self._partial = result.partial
            self._events.append(PartialEvent(result.partial, self.stream.consumed_ms))
        self._maybe_end()

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
    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    @property
    def committed(self) -> Sequence[Unit]:
        return tuple(self._committed)

    @property
    def compute_ms(self) -> float:
        return 1000.0 * self._compute_s

    def summary(self) -> dict:
        source_ms = self.stream.received_ms
        lags = [u.media_delay_ms - u.end_ms for u in self._committed]
        return {
            "units": len(self._committed),
            "source_ms": round(source_ms, 1),
            "compute_ms": round(self.compute_ms, 1),
            "rtf": round(self.compute_ms / source_ms, 4) if source_ms > 0 else None,
            "mean_commit_lag_ms": round(float(np.mean(lags)), 1) if lags else None,
            "p90_commit_lag_ms": round(float(np.percentile(lags, 90)), 1) if lags else None,
            "video_frames": self.video_frames,
        }

    def _maybe_end(self) -> None:
        if self._eof and not self._ended and not self._stepping and self.stream.is_done():
            self._ended = True
            if self._partial:
                self._partial = ""
            self._events.append(EndEvent(tuple(self._committed), self.stream.received_ms, self.summary()))

    def _error(self, e: StreamrtError) -> None:
        self._events.append(ErrorEvent(e.code, e.message, e.fatal))
        if e.fatal and not self._eof:
            self.receive_eof()
