"""The scheduler's settings: every limit named, with its unit; ``None`` disables one where allowed."""

from __future__ import annotations

from dataclasses import dataclass

from streamrt.errors import ConfigError


@dataclass(frozen=True)
class SchedulerSettings:
    """How the scheduler batches, orders and degrades.

    max_batch_size: most streams in one ``model.step`` (streams); ``None``: every ready stream.
    max_wait_ms: after the first stream is ready, how long to wait for more to become ready so they
        share the step (ms); never waits past the point where the most urgent deadline would be
        missed, and never while another model's real-time streams are ready (the worker would idle
        while they wait). ``None`` or 0: step at once with whatever is ready.
    latency_budget_ms: a ready stream's deadline is the time its next step became available (the
        arrival of the audio completing it) plus this (ms): queueing plus one step must fit in it.
    step_time_window: observed steps kept to fit the step-time model t(b) = a + c*b (steps).
    degrade_high_water_ms: when the worst ready stream's lag (how long its next step has waited)
        is above this, the scheduler turns the degradation ladder up one level (ms); ``None``
        disables degradation entirely.
    degrade_low_water_ms: when the worst lag is below this, it turns the ladder down one level (ms).
        Must be below the high-water mark (hysteresis).
    degrade_hold_ms: least time between two level changes, so the effect of one change is seen
        before the next (ms).
    degrade_memory_ms: how long a level that could not keep up with N streams is not retried while
        N or more streams are live (ms); after that it is tried again.
    degrade_busy_fraction: when the model has been stepping for at least this fraction of the
        last ``degrade_busy_window_ms`` (wall time), the machine is at its limit: the scheduler
        turns the ladder up one level before lag builds (fraction, 0-1]; ``None``: lag alone.
    degrade_idle_fraction: a level that failed with as many streams as now is retried after
        ``degrade_memory_ms`` only while the busy fraction is below this (a level that halves the
        work runs at about half the busy fraction that turned it on), so a steady load does not
        flap between two levels (fraction, below ``degrade_busy_fraction``).
    degrade_busy_window_ms: the wall time the busy fraction is measured over, from the last level
        change on (ms): long enough that one slow step or one drained backlog does not move it.
    saturation_busy_fraction: with no degradation rung left (ladder at its top, or off), a model
        busy at least this fraction of the last ``degrade_busy_window_ms`` makes the scheduler
        report itself saturated (``Scheduler.saturation``; servers refuse new sessions then), as
        does a stream waiting past ``latency_budget_ms`` (fraction, (0, 1]; ``None``: lag alone).
    background_min_share: the least share of the stepping time (over the last
        ``degrade_busy_window_ms``) that background streams (``Scheduler.add(..., background=True)``:
        uploads, batch jobs) get while they have work and real-time streams are ready too; below it
        a background batch goes before the real-time ones, so background work is never starved
        (fraction, (0, 1)); ``None``: background streams step only when no real-time stream is
        ready (they may wait forever under a steady real-time overload).
    """

    max_batch_size: int | None = 64
    max_wait_ms: float | None = 10.0
    latency_budget_ms: float = 1000.0
    step_time_window: int = 64
    degrade_high_water_ms: float | None = 1000.0
    degrade_low_water_ms: float = 300.0
    degrade_hold_ms: float = 1000.0
    degrade_memory_ms: float = 10_000.0
    degrade_busy_fraction: float | None = 0.95
    degrade_idle_fraction: float = 0.5
    degrade_busy_window_ms: float = 5000.0
    saturation_busy_fraction: float | None = 0.95
    background_min_share: float | None = 0.1

    def __post_init__(self) -> None:
        if self.max_batch_size is not None and self.max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be >= 1 stream or None, got {self.max_batch_size}")
        if self.max_wait_ms is not None and self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms must be >= 0 ms or None, got {self.max_wait_ms}")
        if self.latency_budget_ms <= 0:
            raise ConfigError(f"latency_budget_ms must be > 0 ms, got {self.latency_budget_ms}")
        if self.step_time_window < 2:
            raise ConfigError(f"step_time_window must be >= 2 steps, got {self.step_time_window}")
        if self.degrade_high_water_ms is not None:
            if not 0 <= self.degrade_low_water_ms < self.degrade_high_water_ms:
                raise ConfigError(
                    f"degrade_low_water_ms ({self.degrade_low_water_ms} ms) must be >= 0 and below "
                    f"degrade_high_water_ms ({self.degrade_high_water_ms} ms)"
                )
        if self.degrade_hold_ms < 0:
            raise ConfigError(f"degrade_hold_ms must be >= 0 ms, got {self.degrade_hold_ms}")
        if self.degrade_memory_ms < 0:
            raise ConfigError(f"degrade_memory_ms must be >= 0 ms, got {self.degrade_memory_ms}")
        if self.degrade_busy_fraction is not None:
            if not 0 < self.degrade_busy_fraction <= 1:
                raise ConfigError(f"degrade_busy_fraction must be in (0, 1] or None, got {self.degrade_busy_fraction}")
            if not 0 <= self.degrade_idle_fraction < self.degrade_busy_fraction:
                raise ConfigError(
                    f"degrade_idle_fraction ({self.degrade_idle_fraction}) must be >= 0 and below "
                    f"degrade_busy_fraction ({self.degrade_busy_fraction})"
                )
        if self.saturation_busy_fraction is not None and not 0 < self.saturation_busy_fraction <= 1:
            raise ConfigError(
                f"saturation_busy_fraction must be in (0, 1] or None, got {self.saturation_busy_fraction}")
        if self.background_min_share is not None and not 0 < self.background_min_share < 1:
            raise ConfigError(
                f"background_min_share must be in (0, 1) or None, got {self.background_min_share}")
        if self.degrade_busy_window_ms <= 0:
            raise ConfigError(f"degrade_busy_window_ms must be > 0 ms, got {self.degrade_busy_window_ms}")
