"""What the scheduler gives up, in order, when the machine cannot keep up.

A ``Degradation`` is a ladder of steps; level k means the first k steps are on. Each step calls one
method of a knob protocol the model implements (a model without the knob has a shorter ladder):

    set_low_precision_fraction(f)   fraction of channels in low bit-width (FlexiQ-style knob, from
                                    streamrt.quant); cheaper steps, slightly lower accuracy
    set_chunk_ms(ms)                longer chunks: fewer, larger steps for the same audio; adds
                                    latency, removes per-step overhead
    set_policy_stride(k)            let the read/write policy decide every k-th step only

A rung may cost latency or accuracy, never words: a knob must not skip audio or a hypothesis, so a
stream that falls behind catches up later with every word (``streamrt.tasks.whisper_knobs`` says
how the Whisper model keeps to this; docs/scheduler.md, "Overload costs latency, never words").

``Degradation.for_model(model)`` builds the default ladder from what the model has: precision 50%,
precision 100%, chunk x2, chunk x4, policy stride 2. ``DegradationController`` moves along the ladder
with hysteresis: one level up while the worst lag is above the high-water mark, one level down while
it is below the low-water mark, never two changes within ``hold_ms``, and never back down to a level that
already failed at the current load (see ``DegradationController``).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from streamrt.errors import ConfigError

log = logging.getLogger("streamrt.scheduler")


@runtime_checkable
class PrecisionKnob(Protocol):
    """FlexiQ-style: ``low_precision_fraction`` of channels run in low bit-width (0-1)."""

    low_precision_fraction: float

    def set_low_precision_fraction(self, fraction: float) -> None: ...


@runtime_checkable
class ChunkKnob(Protocol):
    """The audio one step consumes (ms); longer chunks mean fewer, larger steps."""

    chunk_ms: float

    def set_chunk_ms(self, ms: float) -> None: ...


@runtime_checkable
class PolicyStrideKnob(Protocol):
    """The read/write policy decides every k-th step only."""

    def set_policy_stride(self, k: int) -> None: ...


_KNOBS: dict[str, Callable[[Any, Any], None]] = {
    "set_low_precision_fraction": lambda m, v: m.set_low_precision_fraction(v),
    "set_chunk_ms": lambda m, v: m.set_chunk_ms(v),
    "set_policy_stride": lambda m, v: m.set_policy_stride(v),
}


@dataclass(frozen=True)
class DegradationStep:
    """One rung: ``model.<method>(value)`` turns it on, ``model.<method>(restore)`` turns it off;
    ``method`` is one of the knob protocols' setters above."""

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
            _KNOBS[step.method](model, step.value)
            self.level += 1
            log.warning("overload: degradation level %d (%s on)", self.level, step.name)
        while self.level > level:
            step = self.steps[self.level - 1]
            _KNOBS[step.method](model, step.restore)
            self.level -= 1
            log.info("load fell: degradation level %d (%s off)", self.level, step.name)

    @classmethod
    def for_model(cls, model: object) -> "Degradation":
        """The default ladder, limited to the knobs ``model`` offers (possibly empty)."""
        steps: list[DegradationStep] = []
        if isinstance(model, PrecisionKnob):
            base = float(model.low_precision_fraction)
            steps += [
                DegradationStep("precision 50% low-bit", "set_low_precision_fraction", max(base, 0.5), base),
                DegradationStep("precision 100% low-bit", "set_low_precision_fraction", 1.0, max(base, 0.5)),
            ]
        if isinstance(model, ChunkKnob) and isinstance(model.chunk_ms, (int, float)) and model.chunk_ms > 0:
            chunk = model.chunk_ms
            steps += [
                DegradationStep("chunk x2", "set_chunk_ms", chunk * 2, chunk),
                DegradationStep("chunk x4", "set_chunk_ms", chunk * 4, chunk * 2),
            ]
        if isinstance(model, PolicyStrideKnob):
            steps.append(DegradationStep("policy stride 2", "set_policy_stride", 2, 1))
        return cls(steps)


class BusyMeter:
    """The fraction of wall time the model spent stepping over a recent window. Pure: the step
    intervals and the time are passed in (one step at a time, so intervals do not overlap)."""

    def __init__(self) -> None:
        self._steps: deque[tuple[float, float]] = deque()  # (start, end), clock seconds

    def observe(self, start: float, end: float) -> None:
        self._steps.append((start, end))

    def seconds(self, now: float, window_s: float) -> float:
        """Stepping seconds within [now - window_s, now]."""
        lo = now - window_s
        while self._steps and self._steps[0][1] <= lo:
            self._steps.popleft()
        return sum(min(end, now) - max(start, lo) for start, end in self._steps if end > lo)

    def fraction(self, now: float, window_s: float, since: float) -> float | None:
        """Stepping time within [now - window_s, now] over window_s; None until ``since`` (the start
        of what may be measured: the first session, the last level change) is a window ago."""
        busy = self.seconds(now, window_s)
        if since > now - window_s:
            return None
        return min(1.0, max(0.0, busy / window_s))


class DegradationController:
    """Hysteresis on the worst lag and on how busy the model is; pure (time and load are passed
    in), so tests drive it with numbers.

    Up: ``hold_ms`` since the last change and either the worst lag above ``high_water_ms`` and not
    falling since that change (a level that is draining the backlog is given the time to), or the
    model busy at least ``busy_fraction`` of the time (it cannot absorb more: lag is about to grow,
    so the ladder moves before a deadline is missed). The level left behind is remembered as too
    weak for the current load (number of live streams).
    Down: worst lag below ``low_water_ms``, ``hold_ms`` since the last change, and the level below
    not remembered as too weak; or remembered so with more streams than now (and, when it failed on
    the busy fraction, that fraction scaled by the stream counts below ``busy_fraction``); or
    remembered more than ``memory_ms`` ago while the model is busy less than ``idle_fraction`` (the
    load may have changed in ways the stream count does not show, e.g. silence). This keeps a
    steady overload on one level instead of flapping between a level that keeps up and one that
    does not.
    """

    def __init__(self, high_water_ms: float | None, low_water_ms: float, hold_ms: float, memory_ms: float = 10_000.0,
                 busy_fraction: float | None = None, idle_fraction: float = 0.0):
        self.high_water_ms = high_water_ms
        self.low_water_ms = low_water_ms
        self.hold_ms = hold_ms
        self.memory_ms = memory_ms
        self.busy_fraction = busy_fraction
        self.idle_fraction = idle_fraction
        # level -> (load it failed at, when, the busy fraction then or None)
        self._too_weak: dict[int, tuple[int, float, float | None]] = {}
        self._last_change: float | None = None
        self._lag_at_change = 0.0
        self.changes = 0

    @property
    def last_change(self) -> float | None:
        return self._last_change

    def decide(self, level: int, max_level: int, worst_lag_ms: float, now: float, load: int = 0,
               busy: float | None = None) -> int:
        """The level to use from now on, given the current one, the worst lag, the load and the
        busy fraction (None: not measured yet)."""
        if self.high_water_ms is None or max_level == 0:
            return level
        if self._last_change is not None and (now - self._last_change) * 1000.0 < self.hold_ms:
            return level
        new = level
        falling = self._last_change is not None and worst_lag_ms < self._lag_at_change
        lagging = worst_lag_ms > self.high_water_ms and not falling
        saturated = self.busy_fraction is not None and busy is not None and busy >= self.busy_fraction
        if (lagging or saturated) and level < max_level:
            self._too_weak[level] = (load, now, busy)
            new = level + 1
        elif worst_lag_ms < self.low_water_ms and level > 0 and self._may_retry(level - 1, load, now, busy):
            self._too_weak.pop(level - 1, None)
            new = level - 1
        if new != level:
            self._last_change = now
            self._lag_at_change = worst_lag_ms
            self.changes += 1
        return new

    def _may_retry(self, level: int, load: int, now: float, busy: float | None) -> bool:
        """Whether ``level`` may be tried again: it never failed; or it failed with more streams
        than now, and (when it failed on the busy fraction) that fraction scaled to today's streams
        is below the limit; or it failed more than ``memory_ms`` ago and the model is idle enough
        now (busy fraction below ``idle_fraction``, or not measured)."""
        failed = self._too_weak.get(level)
        if failed is None:
            return True
        failed_load, failed_at, failed_busy = failed
        if load < failed_load:
            limit = self.busy_fraction
            if limit is None or failed_busy is None or failed_busy * load / failed_load < limit:
                return True
        idle = self.busy_fraction is None or busy is None or busy < self.idle_fraction
        return idle and (now - failed_at) * 1000.0 >= self.memory_ms


def saturation_reason(*, rungs_left: int | None, busy: float | None, busy_limit: float | None, window_s: float,
                      worst_lag_ms: float, lag_limit_ms: float) -> str | None:
    """Why the machine cannot take one more stream, or None. Pure (the scheduler passes its
    measurements in).

    Saturated: the ladder has no rung left to make room (``rungs_left`` 0, or None: the ladder is
    off), and either the model was stepping at least ``busy_limit`` of the last ``window_s``
    (``busy`` None: not measured yet; ``busy_limit`` None: the rule is off) or the worst stream's
    next step has waited longer than ``lag_limit_ms`` (its deadline is missed). One more stream then
    only pushes every live stream further behind its audio."""
    if rungs_left is not None and rungs_left > 0:
        return None
    ladder = "with every degradation rung on" if rungs_left == 0 else "and degradation is off"
    if busy_limit is not None and busy is not None and busy >= busy_limit:
        return (f"the model was busy {busy:.0%} of the last {window_s:g} s (limit {busy_limit:.0%}, setting "
                f"saturation_busy_fraction) {ladder}")
    if worst_lag_ms > lag_limit_ms:
        return (f"a stream's next step has waited {worst_lag_ms:.0f} ms, past the {lag_limit_ms:g} ms latency "
                f"budget (setting latency_budget_ms), {ladder}")
    return None
