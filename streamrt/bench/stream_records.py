"""What a capacity run records per stream and how it sums them up (``streamrt bench streams``,
``streamrt bench llm-beside-asr``): each stream's commit delays on the wall clock, the worst lag
the scheduler saw, its end or fatal error; ``summarize`` turns the records into the figures of
``bench streams --format json``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np

from streamrt.session import Session
from streamrt.types import CommitEvent, EndEvent, ErrorEvent

if TYPE_CHECKING:
    from streamrt.bench.streams_video import CameraRun


class StreamRecord:
    def __init__(self, session: Session):
        self.session = session
        self.start: float | None = None  # wall time of media position 0
        self.delays_ms: list[float] = []
        self.max_lag_ms = 0.0
        self.errors: list[str] = []
        self.ended = asyncio.Event()

    def take_events(self, stats: dict | None, now: float) -> None:
        """Drain the session's events (called from its ``on_output``): commit delays against the
        wall clock, the worst lag the scheduler saw, and the end or a fatal error."""
        if stats is not None:
            self.max_lag_ms = max(self.max_lag_ms, stats["max_lag_ms"])
        for ev in self.session.events():
            if isinstance(ev, CommitEvent) and self.start is not None:
                self.delays_ms.extend(1000.0 * (now - self.start) - u.end_ms for u in ev.units)
            elif isinstance(ev, EndEvent):
                self.ended.set()
            elif isinstance(ev, ErrorEvent) and ev.fatal:  # e.g. an isolated model failure
                self.errors.append(f"{ev.code}: {ev.message}")
                self.ended.set()


def loop_audio(audio: np.ndarray, n: int, offset: int) -> np.ndarray:
    reps = int(np.ceil((offset + n) / max(len(audio), 1))) + 1
    return np.tile(audio, reps)[offset : offset + n]


def rounded_percentile(values, q: float) -> float | None:
    """The ``q``-th percentile of ``values`` (numpy's, interpolated) to 0.1, None for no values."""
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def summarize(records: list[StreamRecord], stats: dict, n_streams: int, duration_s: float, wall_s: float,
              max_lag_ms: float, per_stream: bool, cams: CameraRun | None = None) -> dict:
    """The run's figures from its records and the scheduler's ``stats``: a stream kept real time when its
    compute stayed under its audio time and its lag within ``max_lag_ms``; with ``cams``, only when
    its camera kept up too."""
    delays = np.array([d for r in records for d in r.delays_ms]) if records else np.zeros(0)
    rows = []
    for r in records:
        s = r.session
        rtf = s.compute_ms / s.stream.received_ms if s.stream.received_ms else 0.0
        kept = rtf < 1.0 and r.max_lag_ms <= max_lag_ms and not r.errors
        rows.append({
            "id": s.id,
            "rtf": round(rtf, 4),
            "max_lag_ms": round(r.max_lag_ms, 1),
            "units": len(s.committed),
            "p95_commit_delay_ms": rounded_percentile(r.delays_ms, 95),
            "kept_realtime": kept,
        })
        if cams is not None:  # held only when its camera kept up too
            video = cams.figures(s)
            rows[-1].update(audio_kept_realtime=kept, video=video, kept_realtime=kept and video["kept"])
    out = {
        "streams": n_streams,
        "duration_s": duration_s,
        "kept_realtime": all(row["kept_realtime"] for row in rows),
        "streams_kept_realtime": sum(row["kept_realtime"] for row in rows),
        "p50_commit_delay_ms": rounded_percentile(delays, 50),
        "p95_commit_delay_ms": rounded_percentile(delays, 95),
        "rtf_max": max((row["rtf"] for row in rows), default=0.0),
        "rtf_mean": round(float(np.mean([row["rtf"] for row in rows])), 4) if rows else 0.0,
        "max_lag_ms": max((row["max_lag_ms"] for row in rows), default=0.0),
        "units": int(sum(row["units"] for row in rows)),
        "failed_streams": sum(bool(r.errors) for r in records),
        "errors": sorted({e for r in records for e in r.errors})[:5],
        "steps": stats["steps"],
        "batch_size_mean": stats["batch_size_mean"],
        "batch_size_max": stats["batch_size_max"],
        "step_time": stats["step_time"],
        "deadline_misses": stats["deadline_misses"],
        "degradation_level_end": stats["degradation"]["level"],
        "degradation_changes": stats["degradation"]["changes"],
        "degradation_history": stats["degradation"]["history"],  # [seconds since start, level] per change
        "wall_s": round(wall_s, 2),
    }
    if cams is not None:
        out["streams_audio_kept_realtime"] = sum(row["audio_kept_realtime"] for row in rows)
        out["video"] = cams.report([r.session for r in records], stats)
    if per_stream:
        out["per_stream"] = rows
    return out
