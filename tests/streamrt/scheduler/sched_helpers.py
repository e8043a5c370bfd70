"""Deterministic helpers for scheduler tests: compute that advances a ManualClock, real-time feeding
in virtual time, and a callback that records what each session delivered."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from streamrt.clock import ManualClock
from streamrt.session import Session
from streamrt.stream_session import StepOutput, StreamSession
from streamrt.testing import CountingModel, EchoTextModel
from streamrt.types import CommitEvent, EndEvent, ErrorEvent


class TimedCountingModel(CountingModel):
    """CountingModel whose step "takes" fixed_s + per_stream_s * b on a ManualClock.

    Offers the degradation knobs: the low-precision fraction f scales the cost by (1 - f/2), and
    set_chunk_ms changes how much audio one step consumes.
    """

    def __init__(self, clock: ManualClock, fixed_s: float = 0.0, per_stream_s: float = 0.0, **kw):
        super().__init__(**kw)
        self.clock = clock
        self.fixed_s = fixed_s
        self.per_stream_s = per_stream_s
        self.low_precision_fraction = 0.0
        self.stepped: list[list[object]] = []  # the streams of every step, in order
        self.knob_calls: list[tuple[str, object]] = []
        self.log: list | None = None  # shared with other models: ("asr", streams) per step

    def step(self, streams):
        for s in streams:
            if getattr(s, "poison", False):
                raise ValueError("poisoned stream")  # before touching any stream: safe to retry
        super().step(streams)
        self.stepped.append(list(streams))
        if self.log is not None:
            self.log.append(("asr", list(streams)))
        cost = (self.fixed_s + self.per_stream_s * len(streams)) * (1 - self.low_precision_fraction / 2)
        self.clock.advance(cost)

    def set_low_precision_fraction(self, f: float) -> None:
        self.knob_calls.append(("precision", f))
        self.low_precision_fraction = f

    def set_chunk_ms(self, ms: float) -> None:
        self.knob_calls.append(("chunk", ms))
        self.chunk_ms = int(ms)


class Recorder:
    """on_output callback: keeps every event per session id."""

    def __init__(self):
        self.events: dict[str, list] = defaultdict(list)

    def __call__(self, session: Session) -> None:
        self.events[session.id].extend(session.events())

    def committed_words(self, sid: str) -> list[str]:
        return [u.text for e in self.events[sid] if isinstance(e, CommitEvent) for u in e.units]

    def ended(self, sid: str) -> bool:
        return any(isinstance(e, EndEvent) for e in self.events[sid])

    def errors(self, sid: str) -> list[ErrorEvent]:
        return [e for e in self.events[sid] if isinstance(e, ErrorEvent)]


def words_for(duration_ms: float, word_ms: float = 500.0) -> list[str]:
    return [f"w{i}" for i in range(int(np.ceil(duration_ms / word_ms - 1e-9)))]


async def advance_to(sched, clock: ManualClock, t: float) -> None:
    """Let virtual time reach ``t``: steps advance it while work is pending; idle time is skipped."""
    while clock.now() < t:
        if sched.idle:
            clock.advance(t - clock.now())
        else:
            await sched.wait_progress()


def chunk(ms: float, sr: int = 16000) -> np.ndarray:
    return np.zeros(int(sr * ms / 1000), np.float32)


class TimedEchoTextModel(EchoTextModel):
    """EchoTextModel whose step "takes" fixed_s + per_stream_s * b on a ManualClock, and records
    each step's streams (``stepped``) and, when given, into a log shared with other models."""

    def __init__(self, clock: ManualClock, fixed_s: float = 0.0, per_stream_s: float = 0.0,
                 log: list | None = None, **kw):
        super().__init__(**kw)
        self.clock = clock
        self.fixed_s = fixed_s
        self.per_stream_s = per_stream_s
        self.stepped: list[list[object]] = []
        self.log = log

    def step(self, streams):
        super().step(streams)
        self.stepped.append(list(streams))
        if self.log is not None:
            self.log.append(("llm", list(streams)))
        self.clock.advance(self.fixed_s + self.per_stream_s * len(streams))


def text_session(model, clock: ManualClock, sid: str) -> StreamSession:
    return StreamSession(model.create_stream(), clock, session_id=sid)


def answered(rec: "Recorder", sid: str) -> list[str]:
    """The words a text session's steps committed, in order."""
    return [u.text.strip() for e in rec.events[sid] if isinstance(e, StepOutput) for u in e.result.committed]
