"""The lip activity of one camera, queried by media time: what fusing it with audio VAD needs.

    timeline = LipTimeline()
    timeline.add(step_result.lips)                    # as the lip-activity stream scores frames
    timeline.state_between(speech_start_ms, now_ms)   # "active" | "still" | "unknown"

Times are the session's media clock (the audio's), so a VAD segment and the frames seen during it
line up. ``state_between`` says ``active`` when any frame in the span had moving lips, ``still`` only
when frames with a face cover the whole span (no gap over ``max_gap_ms``, from its start to its end)
and none moved, and ``unknown`` otherwise (no camera, no face, frames missing): a caller treats
unknown as "no evidence" and keeps its audio-only behaviour.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable, Literal

from streamrt.errors import ConfigError
from streamrt.types import LipActivity

State = Literal["active", "still", "unknown"]
RATE_SPAN_MS = 2000.0  # frame_interval_ms averages over this much media


class LipTimeline:
    """keep_ms: how much history is kept (ms of media before the newest frame); max_gap_ms: the
    longest span without a scored frame that still counts as seen (ms; about two frames at 5 fps)."""

    def __init__(self, keep_ms: float = 10_000.0, max_gap_ms: float = 450.0):
        if not keep_ms > 0 or not max_gap_ms > 0:
            raise ConfigError(f"LipTimeline: keep_ms and max_gap_ms must be > 0 ms, got {keep_ms}, {max_gap_ms}")
        self.keep_ms = keep_ms
        self.max_gap_ms = max_gap_ms
        self._frames: deque[LipActivity] = deque()

    def add(self, frames: Iterable[LipActivity]) -> None:
        """Frames in time order (as the stream scores them); older history is forgotten."""
        for a in frames:
            if self._frames and a.time_ms <= self._frames[-1].time_ms:
                continue  # the stream never goes back; ignore a repeat
            self._frames.append(a)
        while self._frames and self._frames[0].time_ms < self._frames[-1].time_ms - self.keep_ms:
            self._frames.popleft()

    @property
    def latest_ms(self) -> float | None:
        return self._frames[-1].time_ms if self._frames else None

    @property
    def next_due_ms(self) -> float | None:
        """When the camera's next frame is due: the newest frame's time plus the last interval
        between frames (at most ``max_gap_ms``); None with no frames."""
        if not self._frames:
            return None
        latest = self._frames[-1].time_ms
        step = latest - self._frames[-2].time_ms if len(self._frames) > 1 else 0.0
        return latest + min(step, self.max_gap_ms)

    @property
    def frame_interval_ms(self) -> float | None:
        """The camera's mean interval between the frames of the last ``RATE_SPAN_MS`` of media (ms;
        None before two frames): its rate as it comes, dropped frames included."""
        if len(self._frames) < 2:
            return None
        latest = self._frames[-1].time_ms
        n, first = 0, latest
        for a in reversed(self._frames):
            if a.time_ms < latest - RATE_SPAN_MS:
                break
            n, first = n + 1, a.time_ms
        return (latest - first) / (n - 1) if n > 1 else latest - self._frames[-2].time_ms

    def covers(self, end_ms: float) -> bool:
        """Every frame the camera took up to ``end_ms`` is here (the next is not due before it).
        False with no frames: a frame that has not arrived may still come."""
        due = self.next_due_ms
        return due is not None and due >= end_ms

    def state_between(self, start_ms: float, end_ms: float) -> State:
        """The lips over [start_ms, end_ms] of media (see the module docstring)."""
        known = [a for a in self._frames if start_ms - self.max_gap_ms <= a.time_ms <= end_ms and a.active is not None]
        if any(a.active for a in known if a.time_ms >= start_ms):
            return "active"
        if not known:
            return "unknown"
        times = [a.time_ms for a in known]
        edges = [start_ms, *times, end_ms]
        if any(b - a > self.max_gap_ms for a, b in zip(edges, edges[1:])):
            return "unknown"
        return "still"
