"""The captioning session: sans-I/O (the shape of websockets' ``Protocol``) over an audio model.

Input goes in with ``receive_audio`` / ``receive_pcm`` / ``receive_video`` / ``receive_eof``;
model work happens in ``step`` (or, under the scheduler, ``model.step`` on many streams followed by
``complete_step`` on each session); output comes out of ``events()``. No sockets, no event loop, no
clock reads except through the injected ``Clock``. The stepping, staging and cancel machinery is
``StreamSession``'s (``streamrt.stream_session``); this adds audio conversion, the per-session
limits and units stamped with media delay and elapsed time.

The feed path never raises: bad input becomes an ``ErrorEvent``; a fatal one closes the session,
after which everything already committed is still delivered with the ``EndEvent``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from streamrt.audio import StreamResampler, check_format, decode_pcm, downmix
from streamrt.clock import Clock
from streamrt.engine import AudioStream, StepResult
from streamrt.errors import InputError, LimitExceeded, SessionClosed, StreamrtError
from streamrt.stream_session import StreamSession
from streamrt.types import AudioChunk, CommitEvent, EndEvent, Event, PartialEvent, Unit, VideoFrame


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


class Session(StreamSession):
    stream: AudioStream

    def __init__(
        self,
        stream: AudioStream,
        clock: Clock,
        *,
        model_sample_rate: int = 16000,
        input_sample_rate: int = 16000,
        input_channels: int = 1,
        limits: SessionLimits = SessionLimits(),
        session_id: str | None = None,
        video: StreamSession | None = None,
    ):
        check_format("pcm_f32le", input_sample_rate, input_channels)
        super().__init__(stream, clock, session_id=session_id)
        self.limits = limits
        self.model_sample_rate = model_sample_rate
        self.input_sample_rate = input_sample_rate
        self.input_channels = input_channels
        self._resample = StreamResampler(input_sample_rate, model_sample_rate)
        self._committed: list[Unit] = []
        self._partial = ""
        self._received_input_samples = 0
        self._sent_samples = 0  # at the model's rate: where the next AudioChunk starts
        self._staged_samples = 0  # of them, staged while a step runs
        self.video_frames = 0
        self.video = video  # a session of a video model (lip activity) beside the audio one

    # ---- input -------------------------------------------------------------------------------
    @property
    def backlog_s(self) -> float:
        """Seconds of audio received but not yet consumed by the model (``max_buffered_audio_s``
        bounds it): a sender that may go faster than real time keeps it under the limit."""
        return (self.stream.received_ms - self.stream.consumed_ms) / 1000 + self._staged_samples / self.model_sample_rate

    @property
    def received_ms(self) -> float:
        """Audio received so far, ms: where the media clock is now (video frames are stamped on it)."""
        return 1000.0 * self._received_input_samples / self.input_sample_rate

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
        self._to_stream_audio(self._resample(downmix(x)))

    def _to_stream_audio(self, samples: np.ndarray) -> None:
        if not len(samples):
            return
        chunk = AudioChunk(samples, self.model_sample_rate, 1000.0 * self._sent_samples / self.model_sample_rate)
        self._sent_samples += len(samples)
        if self._stepping:
            self._staged_samples += len(samples)
        self._to_stream(chunk)

    def _after_unstage(self) -> None:
        self._staged_samples = 0

    def receive_video(self, frame: VideoFrame) -> None:
        """A frame whose ``time_ms`` is on this session's media clock (ms from the first audio
        sample). It goes to the stream if that takes video (``VideoFrame`` in ``input_kinds``),
        else to the ``video`` session (a video model's stream, e.g. lip activity, which the
        scheduler steps as a session of its own); with neither it is counted and dropped."""
        self.video_frames += 1
        if self._eof:
            return
        if VideoFrame in self.stream.input_kinds:
            self.receive(frame)
        elif self.video is not None:
            self.video.receive(frame)

    def cancel(self) -> None:
        """Cancel the audio stream (see ``StreamSession.cancel``) and the video session with it."""
        super().cancel()
        if self.video is not None:
            self.video.cancel()

    def _before_eof(self) -> None:
        tail = self._resample(np.zeros(0, np.float32), last=True)
        self._to_stream_audio(tail)
        if self.video is not None:
            self.video.receive_eof()

    # ---- output ------------------------------------------------------------------------------
    def _collect(self, result: StepResult) -> None:
        compute_ms = self.compute_ms
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

    def events(self) -> list[Event]:
        return super().events()

    @property
    def committed(self) -> Sequence[Unit]:
        return tuple(self._committed)

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

    def _end_event(self) -> EndEvent:
        self._partial = ""
        return EndEvent(tuple(self._committed), self.stream.received_ms, self.summary())
