"""What the scheduler tracks per session: its model's lane, since when it has had a step waiting
(its deadline and lag) and how it has been served.

*Ready since* is the time the audio completing the stream's next step arrived: at a ``wake`` that
makes the stream ready it is that moment; after a step that leaves the stream ready (a backlog) it
is the arrival time of the audio the next step needs, estimated as the amount the last step consumed
(the model's chunk, whatever it is). Waiting for a chunk to fill is therefore not lag: only time
spent ready and unserved is. Audio sent faster than real time (an upload) counts as arriving at
real-time pace (media position p at first-arrival + p), so a burst is not taken for an overload.
A *background* member (an upload, a batch job: ``Scheduler.add(..., background=True)``) has no
deadline: it is stepped when real-time members have slack (or when it is owed its least share of
the stepping time), and its lag is reported but is not overload.
Streams without media time (a text stream, not an ``AudioStream``) are ready since the wake that
made them ready, or since the end of the step that left them ready.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from streamrt.engine import AudioStream, ModelStream
from streamrt.scheduler.lane import Lane
from streamrt.stream_session import StreamSession

OutputCallback = Callable[[StreamSession], object]


class Member:
    def __init__(self, session: StreamSession, lane: Lane, on_output: OutputCallback | None, now: float,
                 background: bool = False):
        self.session = session
        self.background = background
        self.lane = lane
        self.on_output = on_output
        self.audio = isinstance(session.stream, AudioStream)  # paced by media time
        self.arrivals: deque[tuple[float, float]] = deque()  # (received_ms after it, clock time)
        self.last_received_ms = 0.0
        self.anchor: float | None = None  # clock time of the first audio: media p is due at anchor + p
        self.ready_since: float | None = None
        self.steps = 0
        self.max_lag_ms = 0.0
        self.deadline_misses = 0
        self.note_arrival(now)

    @property
    def stream(self) -> ModelStream:
        return self.session.stream

    def note_arrival(self, now: float) -> None:
        """Input (or eof) arrived at ``now``."""
        if not self.audio:
            if self.ready_since is None and self.session.ready():
                self.ready_since = now
            return
        received = self.stream.received_ms
        if received > self.last_received_ms:
            if self.anchor is None:
                self.anchor = now
            self.arrivals.append((received, now))
            self.last_received_ms = received
        if self.ready_since is None and self.session.ready():
            self.ready_since = now

    def note_ready(self, now: float) -> None:
        """The stream was found ready (possibly without a wake, e.g. after a chunk-size change)."""
        if self.ready_since is None:
            self.ready_since = now

    def after_step(self, now: float, consumed_before_ms: float) -> None:
        """The stream was stepped; find when its next step (if it has one) became available."""
        if not self.audio:
            self.ready_since = now if self.session.ready() else None
            return
        consumed = self.stream.consumed_ms
        while self.arrivals and self.arrivals[0][0] <= consumed + 1e-6:
            self.arrivals.popleft()
        if not self.session.ready():
            self.ready_since = None
            return
        needed = consumed + max(consumed - consumed_before_ms, 0.0)
        for received, t in self.arrivals:
            if received >= needed - 1e-6:
                paced = self.anchor + needed / 1000.0 if self.anchor is not None else t
                self.ready_since = min(now, max(t, paced))
                return
        self.ready_since = now  # ready on what it already has (flush, decoding): ready since now

    def backlog_ms(self) -> float | None:
        """Media received but not processed (None: the stream has no media time)."""
        return self.stream.received_ms - self.stream.consumed_ms if self.audio else None

    def lag_ms(self, now: float) -> float:
        """How long its next step has been waiting (0 when it has none)."""
        return 0.0 if self.ready_since is None else max(0.0, 1000.0 * (now - self.ready_since))
