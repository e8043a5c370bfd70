"""What one server counts, and its Prometheus exposition (``GET /metrics``), for every transport.

``ServerStats`` is the one place the server counts things: the transports and ``SessionBridge`` call
its methods (``session_started``, ``session_ended``, ``error``, ``refused``, ``committed``, ``step``)
and it updates both the plain counters (``server.stats.sessions_started`` ...) and a Prometheus
``CollectorRegistry`` of its own (never the global default one, so several servers in one process
do not clash). Load figures that already live elsewhere (the scheduler's busy fraction, degradation
level, saturation; the model's preset and precision) are read when scraped:

    body, content_type = render(server.stats, scheduler.stats(), model.describe())

The metric names and what each means are listed in docs/operations.md.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# seconds; commit delay is audio-time (see docs/operations.md), step time is wall time of one batched step
COMMIT_DELAY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
# seconds of the user's media clock: end of speech -> first agent audio; speech onset -> agent cancelled
ONSET_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0)
BARGE_IN_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0)

log = logging.getLogger("streamrt.server")

REFUSAL_REASONS = ("max_sessions", "saturated", "shutting_down", "starting", "max_handshakes")


class PrometheusMetrics:
    """The Prometheus side of ``ServerStats``: one registry per server."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.sessions_active = Gauge("streamrt_sessions_active", "Sessions started and not yet ended.", registry=r)
        self.sessions_started = Counter("streamrt_sessions_started", "Sessions started (a valid start).", registry=r)
        self.sessions_ended = Counter(
            "streamrt_sessions_ended",
            "Sessions ended, by reason: end (the client stopped), the code of the fatal error that ended it, "
            "or connection_lost.",
            ["reason"], registry=r,
        )  # fmt: skip
        self.refusals = Counter(
            "streamrt_refusals", "Connections refused before a session, by reason (the setting that refused it).",
            ["reason"], registry=r,
        )  # fmt: skip
        for reason in REFUSAL_REASONS:
            self.refusals.labels(reason)  # present at 0 from the start, so rate() works
        self.errors = Counter("streamrt_errors", "error messages sent to clients, by code.", ["code"], registry=r)
        self.words = Counter("streamrt_words_committed", "Words committed to clients.", registry=r)
        self.audio = Counter("streamrt_audio_seconds", "Seconds of audio received by sessions that ended.", registry=r)
        self.commit_delay = Histogram(
            "streamrt_commit_delay_seconds",
            "Per committed word: audio consumed past the word's end when it was committed (media_delay_ms - end_ms).",
            buckets=COMMIT_DELAY_BUCKETS, registry=r,
        )  # fmt: skip
        self.step_time = Histogram(
            "streamrt_step_seconds", "Wall time of one batched model step.", buckets=STEP_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "streamrt_batch_size", "Streams per batched model step.", buckets=BATCH_BUCKETS, registry=r
        )
        self.busy = Gauge(
            "streamrt_scheduler_busy_fraction", "Share of the recent busy window spent stepping (NaN until known).",
            registry=r,
        )  # fmt: skip
        self.level = Gauge("streamrt_degradation_level", "Degradation ladder level (0: none).", registry=r)
        self.max_level = Gauge("streamrt_degradation_max_level", "Highest degradation level.", registry=r)
        self.saturated = Gauge(
            "streamrt_saturated", "1 while the scheduler reports saturation (new sessions refused), else 0.", registry=r
        )
        self.worst_lag = Gauge("streamrt_worst_lag_seconds", "Longest wait of a ready step, last step.", registry=r)
        self.model_info = Gauge(
            "streamrt_model_info", "The model served: name, preset and precision in use (value 1).",
            ["model", "preset", "precision"], registry=r,
        )  # fmt: skip
        # the voice agent (/v1/dialogue); its dialogues also count in streamrt_sessions_*
        self.dialogues_active = Gauge("streamrt_dialogues_active", "Dialogues started and not yet ended.", registry=r)
        self.dialogues_started = Counter("streamrt_dialogues_started", "Dialogues started (a valid start).",
                                         registry=r)
        self.dialogue_turns = Counter("streamrt_dialogue_agent_turns", "Agent turns that started speaking.",
                                      registry=r)
        self.dialogue_interruptions = Counter("streamrt_dialogue_interruptions",
                                              "Agent turns cut by the user (barge-ins: interrupted sent).", registry=r)
        self.dialogue_errors = Counter("streamrt_dialogue_errors", "error messages sent on /v1/dialogue, by code.",
                                       ["code"], registry=r)
        self.response_onset = Histogram(
            "streamrt_dialogue_response_onset_seconds",
            "Per answered user turn: the VAD's end of the user's speech -> the answer's first audio sent "
            "(user media clock, server side: the network and the client's playback buffer are not in it).",
            buckets=ONSET_BUCKETS, registry=r,
        )  # fmt: skip
        self.barge_in = Histogram(
            "streamrt_dialogue_barge_in_seconds",
            "Per barge-in: the VAD's onset of the interrupting speech -> the agent's audio stopped (agent_pause, "
            "or interrupted when no pause came first; user media clock, server side).",
            buckets=BARGE_IN_BUCKETS, registry=r,
        )  # fmt: skip


@dataclass
class ServerStats:
    """Counters a test or an operator can read (``StreamServer.stats``), and their Prometheus twins
    (``prometheus.registry``). Call the methods; the int fields are kept for reading."""

    sessions_started: int = 0
    sessions_ended: int = 0  # ended with ``end`` (every way, fatal errors included)
    connections_active: int = 0
    refused_busy: int = 0
    refused_saturated: int = 0
    closed_slow_client: int = 0
    disconnected_early: int = 0
    words_committed: int = 0
    max_send_queue: int = 0
    prometheus: PrometheusMetrics = field(default_factory=PrometheusMetrics, repr=False, compare=False)

    def session_started(self) -> None:
        self.sessions_started += 1
        self.prometheus.sessions_started.inc()
        self.prometheus.sessions_active.inc()

    def session_ended(self, reason: str, ended: bool, audio_s: float) -> None:
        """A started session left (exactly once per ``session_started``). ``ended``: it sent ``end``."""
        self.sessions_ended += ended
        self.prometheus.sessions_ended.labels(reason).inc()
        self.prometheus.sessions_active.dec()
        self.prometheus.audio.inc(max(0.0, audio_s))

    def error(self, code: str) -> None:
        self.prometheus.errors.labels(code).inc()

    # ---- the voice agent (``DialogueBridge`` calls these, beside the session ones) ------------
    def dialogue_started(self) -> None:
        self.prometheus.dialogues_started.inc()
        self.prometheus.dialogues_active.inc()

    def dialogue_ended(self) -> None:
        """Once per ``dialogue_started``."""
        self.prometheus.dialogues_active.dec()

    def dialogue_error(self, code: str) -> None:
        self.prometheus.dialogue_errors.labels(code).inc()

    def agent_turn(self, onset_s: float | None) -> None:
        """An agent turn started speaking; ``onset_s``: from the end of the user's speech it answers
        (None: a greeting, or a session that did not say where the speech ended)."""
        self.prometheus.dialogue_turns.inc()
        if onset_s is not None:
            self.prometheus.response_onset.observe(max(0.0, onset_s))

    def interrupted(self, reaction_s: float | None) -> None:
        """A barge-in cut an agent turn; ``reaction_s``: from the onset of the interrupting speech to
        the agent's audio stopped."""
        self.prometheus.dialogue_interruptions.inc()
        if reaction_s is not None:
            self.prometheus.barge_in.observe(max(0.0, reaction_s))

    def refused(self, reason: str) -> None:
        """A connection refused before any session; ``reason`` one of ``REFUSAL_REASONS``."""
        if reason == "max_sessions":
            self.refused_busy += 1
        elif reason == "saturated":
            self.refused_saturated += 1
        self.prometheus.refusals.labels(reason).inc()

    def committed(self, words: list[Mapping]) -> None:
        """A commit message's words (their JSON form) as queued for the client."""
        self.words_committed += len(words)
        self.prometheus.words.inc(len(words))
        for w in words:
            self.prometheus.commit_delay.observe(max(0.0, (w["media_delay_ms"] - w["end_ms"]) / 1000.0))

    def step(self, batch_size: int, seconds: float) -> None:
        """The scheduler ran one batched step (a ``Scheduler`` step listener)."""
        self.prometheus.step_time.observe(seconds)
        self.prometheus.batch_size.observe(batch_size)


def render(stats: ServerStats, scheduler_stats: Mapping | None, model_info: Mapping | None) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``stats``, with the load gauges set from ``scheduler_stats``
    (``Scheduler.stats()``) and the model info from ``model_info`` (name, preset, precision).
    Returns ``(body, content_type)`` for any HTTP transport to send with status 200."""
    p = stats.prometheus
    if scheduler_stats is not None:
        busy = scheduler_stats.get("busy_fraction")
        p.busy.set(math.nan if busy is None else busy)
        deg = scheduler_stats.get("degradation") or {}
        p.level.set(deg.get("level", 0))
        p.max_level.set(deg.get("max_level", 0))
        p.saturated.set(0 if scheduler_stats.get("saturation") is None else 1)
        p.worst_lag.set((scheduler_stats.get("worst_lag_ms") or 0.0) / 1000.0)
    if model_info is not None:
        p.model_info.clear()
        labels = [str(model_info.get(k) or "") for k in ("model", "preset", "precision")]
        p.model_info.labels(*labels).set(1)
    return generate_latest(p.registry), CONTENT_TYPE_LATEST


def _logfmt(value: object) -> str:
    text = "-" if value is None else str(value)
    if not text or any(c in text for c in ' "=\\') or not text.isprintable():
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text.encode("ascii", "backslashreplace").decode()


def session_end_fields(session, reason: str, close: tuple[int, str] | None, duration_s: float,
                       scheduler_stats: Mapping | None) -> dict:
    """The fields of the one log line per session end (see ``log_session_end``)."""
    delays = sorted(u.media_delay_ms - u.end_ms for u in session.committed)

    def pct(q: float) -> float | None:  # nearest rank
        return None if not delays else round(delays[min(len(delays) - 1, math.ceil(q * len(delays)) - 1)], 1)

    return {
        "session_id": session.id,
        "reason": reason,
        "close_code": None if close is None else close[0],
        "duration_s": round(duration_s, 3),
        "audio_s": round(session.stream.received_ms / 1000.0, 3),
        "words": len(session.committed),
        "commit_delay_p50_ms": pct(0.5),
        "commit_delay_p95_ms": pct(0.95),
        "max_lag_ms": None if scheduler_stats is None else scheduler_stats.get("max_lag_ms"),
        "compute_ms": round(session.compute_ms, 1),
    }


def log_session_end(session, reason: str, close: tuple[int, str] | None, duration_s: float,
                    scheduler_stats: Mapping | None) -> None:
    """Log one line at INFO on ``streamrt.server``: ``session_end key=value ...`` (logfmt: values with
    spaces or quotes are double-quoted, ``-`` is none). The same fields ride on the record as
    ``record.session_end`` (a dict), for a JSON log handler."""
    fields = session_end_fields(session, reason, close, duration_s, scheduler_stats)
    if log.isEnabledFor(logging.INFO):
        line = " ".join(f"{k}={_logfmt(v)}" for k, v in fields.items())
        log.info("session_end %s", line, extra={"session_end": fields})
