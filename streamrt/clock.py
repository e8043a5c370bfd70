"""Clocks are injected: the core never reads the time itself.

A live transport passes ``MonotonicClock()``; offline evaluation passes a ``ManualClock`` (or the
monotonic one, to measure real compute for the computation-aware metrics) so runs are deterministic.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale; only differences are meaningful."""


class MonotonicClock:
    def now(self) -> float:
        return time.perf_counter()


class ManualClock:
    """A clock that moves only when told to (tests, deterministic simulations)."""

    def __init__(self, start: float = 0.0):
        self._t = float(start)

    def now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        self._t += seconds
