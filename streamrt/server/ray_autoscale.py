"""Ray Serve autoscaling on the scheduler's own load signals (Ray Serve custom-metric autoscaling).

Each replica reports, every ``metrics_interval_s`` (``StreamrtReplica.record_autoscaling_stats``):

- ``busy_fraction``: the share of the last busy window its scheduler spent stepping the model
  (``Scheduler.stats()["busy_fraction"]``; 0 until the first window has passed);
- ``saturated``: 1 while the scheduler reports itself saturated (no degradation rung left and busy
  past ``saturation_busy_fraction``, or a stream past its latency budget), else 0;
- ``sessions``: live sessions.

Ray's controller averages each over ``look_back_period_s`` and calls ``BusyFractionPolicy`` with
them; Ray then applies ``min_replicas``/``max_replicas``, ``upscale_delay_s``/``downscale_delay_s``
and the scaling factors to what it returns. This module does not import Ray: Ray pickles the policy
class by value and runs it on the controller.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

METRICS = ("busy_fraction", "saturated", "sessions")


def desired_replicas(
    current: int,
    metrics: Mapping[str, Mapping[Any, float]],
    *,
    target_busy_fraction: float,
    max_sessions: int | None,
) -> int:
    """Replicas wanted for the load in ``metrics`` ({metric: {replica: value}}).

    Enough replicas that the summed busy fraction is at most ``target_busy_fraction`` each, and the
    summed sessions at most ``target_busy_fraction * max_sessions`` each; one more than now while any
    replica is saturated (it is refusing sessions). With no report yet: ``current``."""
    busy = metrics.get("busy_fraction") or {}
    if not busy:
        return current
    want = math.ceil(sum(busy.values()) / target_busy_fraction - 1e-9)
    sessions = metrics.get("sessions") or {}
    if max_sessions is not None and sessions:
        want = max(want, math.ceil(sum(sessions.values()) / (target_busy_fraction * max_sessions) - 1e-9))
    if any(v > 0 for v in (metrics.get("saturated") or {}).values()):
        want = max(want, current + 1)
    return max(1, want)


class BusyFractionPolicy:
    """A Ray Serve autoscaling policy class: ``AutoscalingPolicy(policy_function=BusyFractionPolicy,
    policy_kwargs={"target_busy_fraction": 0.7, "max_sessions": 64})``. Ray builds it once and calls
    it with an ``AutoscalingContext`` every control-loop tick."""

    def __init__(self, target_busy_fraction: float = 0.7, max_sessions: int | None = None):
        if not 0 < target_busy_fraction <= 1:
            raise ValueError(f"target_busy_fraction must be in (0, 1], got {target_busy_fraction}")
        self.target_busy_fraction = target_busy_fraction
        self.max_sessions = max_sessions

    def __call__(self, ctx) -> tuple[int, dict]:
        want = desired_replicas(
            ctx.current_num_replicas, ctx.aggregated_metrics or {},
            target_busy_fraction=self.target_busy_fraction, max_sessions=self.max_sessions,
        )
        return want, {}
