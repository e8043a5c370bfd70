"""What the scheduler tracks per session: when its audio arrived (for its deadline and lag) and how
it has been served."""

from __future__ import annotations

from collections import deque
from typing import Callable

from streamrt.engine import ModelStream
from streamrt.session import Session

OutputCallback = Callable[[Session], object]


class Member:
    """What the scheduler knows about one session: when its audio arrived, how it has been served."""

    def __init__(self, session: Session, on_output: OutputCallback | None, now: float):
        self.session = session
        self.on_output = on_output
        self.arrivals: deque[tuple[float, float]] = deque()  # (received_ms after it, clock time)
        self.last_received_ms = 0.0
        self.anchor: float | None = None  # clock time of the first audio: media p is due at anchor + p
        self.eof_at: float | None = None
        self.last_served = now
        self.steps = 0
        self.max_lag_ms = 0.0
        self.deadline_misses = 0
        self.note_arrival(now)

    @property
    def stream(self) -> ModelStream:
        return self.session.stream

    def note_arrival(self, now: float) -> None:
        received = self.stream.received_ms
        if received > self.last_received_ms:
            if self.anchor is None:
                self.anchor = now
            self.arrivals.append((received, now))
            self.last_received_ms = received
        if self.session.closed and self.eof_at is None:
            self.eof_at = now

    def oldest_unprocessed_at(self) -> float:
        """When the oldest audio not yet processed arrived. Audio sent faster than real time counts
        as arriving at real-time pace (media p at anchor + p), so an upload is not an overload."""
        consumed = self.stream.consumed_ms
        while self.arrivals and self.arrivals[0][0] <= consumed + 1e-6:
            self.arrivals.popleft()
        if self.arrivals:
            paced = self.anchor + consumed / 1000.0 if self.anchor is not None else self.arrivals[0][1]
            return max(self.arrivals[0][1], paced)
        if self.eof_at is not None:
            return max(self.eof_at, self.last_served)
        return self.last_served

    def lag_ms(self, now: float) -> float:
        return max(0.0, 1000.0 * (now - self.oldest_unprocessed_at()))
