"""What the scheduler keeps per model: its degradation ladder and controller, its step-time fit and
its counters. Every model on the scheduler has one lane; all lanes share the scheduler's one worker
thread, so one step of one model runs at a time and the busy fraction is the machine's."""

from __future__ import annotations

from collections import Counter, deque

from streamrt.engine import StreamingModel
from streamrt.scheduler.batching import StepTimeModel
from streamrt.scheduler.degradation import Degradation, DegradationController
from streamrt.scheduler.settings import SchedulerSettings


class Lane:
    def __init__(self, name: str, model: StreamingModel, settings: SchedulerSettings,
                 degradation: Degradation | None = None):
        self.name = name
        self.model = model
        self.degradation = degradation if degradation is not None else Degradation.for_model(model)
        self.controller = DegradationController(
            settings.degrade_high_water_ms,
            settings.degrade_low_water_ms,
            settings.degrade_hold_ms,
            settings.degrade_memory_ms,
            settings.degrade_busy_fraction,
            settings.degrade_idle_fraction,
        )
        self.step_time = StepTimeModel(settings.step_time_window)
        self.steps = 0
        self.streams_stepped = 0
        self.batch_sizes: Counter[int] = Counter()
        self.worst_lag_ms = 0.0
        self.level_history: deque[tuple[float, int]] = deque(maxlen=64)  # (s since start, level)

    def ladder_on(self, settings: SchedulerSettings) -> bool:
        return settings.degrade_high_water_ms is not None and self.degradation.max_level > 0

    def observe_step(self, batch_size: int, seconds: float, failed: bool) -> None:
        if not failed:
            self.step_time.observe(batch_size, seconds)
        self.steps += 1
        self.streams_stepped += batch_size
        self.batch_sizes[batch_size] += 1

    def stats(self, sessions: int) -> dict:
        a, c = self.step_time.coefficients()
        return {
            "sessions": sessions,
            "steps": self.steps,
            "streams_stepped": self.streams_stepped,
            "batch_size_mean": round(self.streams_stepped / self.steps, 2) if self.steps else 0.0,
            "batch_size_max": max(self.batch_sizes, default=0),
            "batch_sizes": dict(sorted(self.batch_sizes.items())),
            "step_time": {"fixed_ms": round(1000 * a, 2), "per_stream_ms": round(1000 * c, 3),
                          "observations": self.step_time.observations},
            "worst_lag_ms": round(self.worst_lag_ms, 1),
            "degradation": {
                "level": self.degradation.level,
                "max_level": self.degradation.max_level,
                "active": list(self.degradation.active),
                "changes": self.controller.changes,
                "history": [list(h) for h in self.level_history],
            },
        }
