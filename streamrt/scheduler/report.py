"""The report half of ``Scheduler``: saturation and stats, read from its lanes, members and busy
meter (it changes nothing). Kept apart so the scheduling loop reads on its own."""

from __future__ import annotations

from streamrt.clock import Clock
from streamrt.scheduler.degradation import BusyMeter, saturation_reason
from streamrt.scheduler.lane import Lane
from streamrt.scheduler.member import Member
from streamrt.scheduler.settings import SchedulerSettings
from streamrt.stream_session import StreamSession


class SchedulerReport:
    settings: SchedulerSettings
    _lanes: dict[int, Lane]
    _default: Lane | None
    _members: dict[StreamSession, Member]
    _busy: BusyMeter
    _forced: BusyMeter
    _busy_fraction: float | None
    _started_at: float
    _deadline_misses: int
    _failed: int
    _cancelled: int
    _worst_lag_ms: float
    clock: Clock

    def _budget_s(self, m: Member) -> float:
        budget_ms = m.session.stream.urgency().budget_ms
        return (self.settings.latency_budget_ms if budget_ms is None else budget_ms) / 1000.0

    def _busy_fraction_at(self, now: float) -> float | None:
        """The machine's busy fraction for real-time work (every model's real-time steps) over the
        last busy window, measured from the last level change of any model on: real-time stepping
        time over the wall time left by the background steps that went before ready real-time
        streams (background steps in real-time slack do not count)."""
        changes = [lane.controller.last_change for lane in self._lanes.values()]
        since = max((c for c in changes if c is not None), default=self._started_at)
        window_s = self.settings.degrade_busy_window_ms / 1000.0
        busy = self._busy.fraction(now, window_s, since)
        if busy is None:
            return None
        forced = self._forced.seconds(now, window_s) / window_s
        return min(1.0, busy / max(1.0 - forced, 1e-9))

    # ---- report --------------------------------------------------------------------------------
    def saturation(self) -> str | None:
        """Why one more stream cannot be served now, or None (``degradation.saturation_reason``):
        no degradation rung left on any model, and the machine busy past
        ``saturation_busy_fraction`` of the last busy window (measured from the last level change)
        or a stream past its latency budget. Measured now, so it clears as soon as streams leave or
        the host speeds up."""
        realtime = [m for m in self._members.values() if not m.background]
        if not realtime:  # background work yields; it never makes the machine full
            return None
        now = self.clock.now()
        ladders = [lane for lane in self._lanes.values() if lane.ladder_on(self.settings)]
        worst = max(realtime, key=lambda m: m.lag_ms(now) - 1000.0 * self._budget_s(m))
        return saturation_reason(
            rungs_left=sum(la.degradation.max_level - la.degradation.level for la in ladders) if ladders else None,
            busy=self._busy_fraction_at(now), busy_limit=self.settings.saturation_busy_fraction,
            window_s=self.settings.degrade_busy_window_ms / 1000.0,
            worst_lag_ms=worst.lag_ms(now), lag_limit_ms=1000.0 * self._budget_s(worst),
        )

    def session_stats(self, session: StreamSession) -> dict | None:
        """lag_ms (how long its next step has waited, 0 when not ready), max_lag_ms, backlog_ms
        (media received but not processed; None without media time), steps, deadline_misses,
        model; None if not scheduled."""
        m = self._members.get(session)
        return None if m is None else self._member_stats(m, self.clock.now())

    def _member_stats(self, m: Member, now: float) -> dict:
        backlog = m.backlog_ms()
        return {
            "lag_ms": round(m.lag_ms(now), 1),
            "max_lag_ms": round(m.max_lag_ms, 1),
            "backlog_ms": None if backlog is None else round(backlog, 1),
            "steps": m.steps,
            "deadline_misses": m.deadline_misses,
            "model": m.lane.name,
            "background": m.background,
        }

    def stats(self) -> dict:
        """A snapshot: counts, batch sizes, the step-time fit, lag per session, degradation level
        (top level: the default model's batches and ladder, counts and load of the whole machine;
        ``models``: each model's own)."""
        now = self.clock.now()
        per_session = {m.session.id: self._member_stats(m, now) for m in self._members.values()}
        models = {lane.name: lane.stats(sum(1 for m in self._members.values() if m.lane is lane))
                  for lane in self._lanes.values()}
        default = models[self._default.name] if self._default is not None else {}
        return {
            **{k: default.get(k) for k in ("steps", "streams_stepped", "batch_size_mean", "batch_size_max",
                                       "batch_sizes", "step_time", "degradation")},
            "sessions": len(self._members),
            "deadline_misses": self._deadline_misses,
            "failed_sessions": self._failed,
            "cancelled_sessions": self._cancelled,
            "worst_lag_ms": round(self._worst_lag_ms, 1),
            "busy_fraction": None if self._busy_fraction is None else round(self._busy_fraction, 3),
            "saturation": self.saturation(),
            "models": models,
            "per_session": per_session,
        }
