"""What the scheduler gives up, in order, when the machine cannot keep up.

A ``Degradation`` is a ladder of steps; level k means the first k steps are on. Each step calls one
method the model offers (duck-typed: a model without the method simply has a shorter ladder):

    set_low_precision_fraction(f)   fraction of channels in low bit-width (FlexiQ-style knob, from
                                    streamrt.quant); cheaper steps, slightly lower accuracy
    set_chunk_ms(ms)                longer chunks: fewer, larger steps for the same audio; adds
                                    latency, removes per-step overhead
    set_policy_stride(k)            let the read/write policy decide every k-th step only

``Degradation.for_model(model)`` builds the default ladder from what the model has: precision 50%,
precision 100%, chunk x2, chunk x4, policy stride 2. ``DegradationController`` moves along the ladder
with hysteresis: one level up while the worst lag is above the high-water mark, one level down while
it is below the low-water mark, never two changes within ``hold_ms``, and never back down to a level that
already failed at the current load (see ``DegradationController``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

from streamrt.errors import ConfigError

log = logging.getLogger("streamrt.scheduler")


@dataclass(frozen=True)
class DegradationStep:
    """One rung: ``model.<method>(value)`` turns it on, ``model.<method>(restore)`` turns it off."""

    name: str
    method: str
    value: Any
    restore: Any


class Degradation:
    """A ladder of steps applied cumulatively. Level 0 is the model as configured."""

    def __init__(self, steps: Sequence[DegradationStep] = ()):
        self.steps = tuple(steps)
        self.level = 0

    @property
    def max_level(self) -> int:
        return len(self.steps)

    @property
    def active(self) -> tuple[str, ...]:
        """Names of the steps that are on now."""
        return tuple(s.name for s in self.steps[: self.level])

    def set_level(self, model: object, level: int) -> None:
        """Turn steps on or off one at a time until ``level`` is reached. Call only between steps."""
        if not 0 <= level <= self.max_level:
            raise ConfigError(f"degradation level {level} is outside 0..{self.max_level}")
        while self.level < level:
            step = self.steps[self.level]
            getattr(model, step.method)(step.value)
            self.level += 1
            log.warning("overload: degradation level %d (%s on)", self.level, step.name)
        while self.level > level:
            step = self.steps[self.level - 1]
            getattr(model, step.method)(step.restore)
            self.level -= 1
            log.info("load fell: degradation level %d (%s off)", self.level, step.name)

    @classmethod
    def for_model(cls, model: object) -> "Degradation":
        """The default ladder, limited to the knobs ``model`` offers (possibly empty)."""
        steps: list[DegradationStep] = []
        if callable(getattr(model, "set_low_precision_fraction", None)):
            base = float(getattr(model, "low_precision_fraction", 0.0))
            steps += [
                DegradationStep("precision 50% low-bit", "set_low_precision_fraction", max(base, 0.5), base),
                DegradationStep("precision 100% low-bit", "set_low_precision_fraction", 1.0, max(base, 0.5)),
            ]
        chunk = getattr(model, "chunk_ms", None)
        if callable(getattr(model, "set_chunk_ms", None)) and isinstance(chunk, (int, float)) and chunk > 0:
            steps += [
                DegradationStep("chunk x2", "set_chunk_ms", chunk * 2, chunk),
                DegradationStep("chunk x4", "set_chunk_ms", chunk * 4, chunk * 2),
            ]
        if callable(getattr(model, "set_policy_stride", None)):
            steps.append(DegradationStep("policy stride 2", "set_policy_stride", 2, 1))
        return cls(steps)


class DegradationController:
    """Hysteresis on the worst lag; pure (time and load are passed in), so tests drive it with numbers.

    Up: worst lag above ``high_water_ms``, ``hold_ms`` since the last change, and the lag not
    falling since that change (a level that is draining the backlog is given the time to). The
    level left behind is remembered as too weak for the current load (number of live streams).
    Down: worst lag below ``low_water_ms``, ``hold_ms`` since the last change, and the level below
    not remembered as too weak for this load, or remembered more than ``memory_ms`` ago (the load
    may have changed in ways the stream count does not show, e.g. silence). This keeps a steady
    overload on one level instead of flapping between a level that keeps up and one that does not.
    """

    def __init__(self, high_water_ms: float | None, low_water_ms: float, hold_ms: float, memory_ms: float = 10_000.0):
        self.high_water_ms = high_water_ms
        self.low_water_ms = low_water_ms
        self.hold_ms = hold_ms
        self.memory_ms = memory_ms
        self._too_weak: dict[int, tuple[int, float]] = {}  # level -> (load it failed at, when)
        self._last_change: float | None = None
        self._lag_at_change = 0.0
        self.changes = 0

    def decide(self, level: int, max_level: int, worst_lag_ms: float, now: float, load: int = 0) -> int:
        """The level to use from now on, given the current one, the worst lag and the load."""
        if self.high_water_ms is None or max_level == 0:
            return level
        if self._last_change is not None and (now - self._last_change) * 1000.0 < self.hold_ms:
            return level
        new = level
        falling = self._last_change is not None and worst_lag_ms < self._lag_at_change
        if worst_lag_ms > self.high_water_ms and level < max_level and not falling:
            self._too_weak[level] = (load, now)
            new = level + 1
        elif worst_lag_ms < self.low_water_ms and level > 0:
            failed = self._too_weak.get(level - 1)
            if failed is None or load < failed[0] or (now - failed[1]) * 1000.0 >= self.memory_ms:
                self._too_weak.pop(level - 1, None)
                new = level - 1
        if new != level:
            self._last_change = now
            self._lag_at_change = worst_lag_ms
            self.changes += 1
        return new
