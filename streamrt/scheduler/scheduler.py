"""One asyncio scheduler for every session's model work.

    sched = Scheduler(model, clock=MonotonicClock(), settings=SchedulerSettings(...))
    await sched.start()
    sched.add(session, on_output=callback)  # callback(session) runs on the loop after a step touched it
    session.receive_audio(x); sched.wake(session)   # after feeding audio or eof
    sched.remove(session)                   # any time; idempotent
    await sched.stop()                      # finishes the ready work, then stops

The loop picks the ready sessions, orders them by deadline (when their next step became available,
plus ``latency_budget_ms``; see ``member.py``), chooses a batch size with ``batching.choose_batch_size`` and runs
``model.step(streams)`` in a single worker thread (torch releases the GIL, so the loop keeps serving
sockets meanwhile; one step in flight per model). Then, on the loop, ``session.complete_step(seconds)``
for each stream of the batch (each experienced the batch's full wall time) and the session's
callback. After each step the worst lag and the busy fraction (the share of recent wall time spent
stepping) feed the degradation ladder (``degradation.py``).

Threading contract: ``add``/``wake``/``remove``/``stats`` are called on the event loop's thread. A
session's ``receive_audio`` may run while its stream is inside ``model.step`` in the worker thread,
so a ``ModelStream.accept_audio`` must tolerate a concurrent step (append to its input buffer only).

Failure isolation (``isolation.py``): if ``model.step`` raises, the batch is split and retried until
the failing stream is alone (or at once, when the exception carries the failing stream as
``exc.stream``); that session gets a fatal ``ModelStepError`` and leaves; the others go on. A model
should therefore validate before it mutates, so a retried stream is not stepped twice.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from streamrt.clock import Clock
from streamrt.engine import ModelStream, StreamingModel
from streamrt.errors import ModelStepError, SessionClosed
from streamrt.scheduler.batching import StepTimeModel, choose_batch_size
from streamrt.scheduler.degradation import BusyMeter, Degradation, DegradationController, saturation_reason
from streamrt.scheduler.isolation import step_isolating
from streamrt.scheduler.member import Member, OutputCallback
from streamrt.scheduler.settings import SchedulerSettings
from streamrt.session import Session

log = logging.getLogger("streamrt.scheduler")

StepListener = Callable[[int, float], None]  # (batch size, step seconds)


class Scheduler:
    """Batches and orders the model steps of all sessions sharing ``model``. See the module docstring."""

    def __init__(
        self,
        model: StreamingModel,
        *,
        clock: Clock,
        settings: SchedulerSettings = SchedulerSettings(),
        degradation: Degradation | None = None,
    ):
        self.model = model
        self.clock = clock
        self.settings = settings
        self.degradation = degradation if degradation is not None else Degradation.for_model(model)
        self._controller = DegradationController(
            settings.degrade_high_water_ms,
            settings.degrade_low_water_ms,
            settings.degrade_hold_ms,
            settings.degrade_memory_ms,
            settings.degrade_busy_fraction,
            settings.degrade_idle_fraction,
        )
        self._busy = BusyMeter()
        self._busy_fraction: float | None = None
        self._step_time = StepTimeModel(settings.step_time_window)
        self._members: dict[Session, Member] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task | None = None
        self._wakeup: asyncio.Event | None = None
        self._progress: asyncio.Condition | None = None
        self._callbacks: set[asyncio.Future] = set()
        self._woken: set[Member] = set()  # woken while gathering
        self._stopping = False
        self._drain = True
        self._idle = True
        self._steps = 0
        self._streams_stepped = 0
        self._batch_sizes: Counter[int] = Counter()
        self._deadline_misses = 0
        self._failed = 0
        self._worst_lag_ms = 0.0
        self._started_at = 0.0
        self._level_history: deque[tuple[float, int]] = deque(maxlen=64)  # (s since start, level)
        self._step_listeners: list[StepListener] = []

    # ---- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the scheduling task on the running loop. Call once."""
        if self._task is not None:
            raise RuntimeError("Scheduler.start() was already called")
        self._started_at = self.clock.now()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamrt-step")
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task = asyncio.create_task(self._run(), name="streamrt-scheduler")
        self._signal()

    async def stop(self, *, drain: bool = True, drain_timeout_s: float | None = 60.0) -> None:
        """Stop scheduling. ``drain``: first step every session until none is ready, so all audio
        already received (and every flush after eof) is processed and delivered; after
        ``drain_timeout_s`` seconds (None: no limit) the drain is cut short after the step in
        flight. Sessions stay attached (their state is untouched); no new ones are accepted. The
        degradation ladder is turned back to level 0, leaving the shared model as configured."""
        if self._task is None:
            return
        self._stopping = True
        self._drain = drain
        self._signal()
        done, _ = await asyncio.wait({self._task}, timeout=drain_timeout_s)
        if not done:
            log.warning("drain not finished after %s s: stopping after the step in flight", drain_timeout_s)
            self._drain = False
            self._signal()
        try:
            await self._task
            if self.degradation.level:
                try:
                    self.degradation.set_level(self.model, 0)  # leave the shared model as configured
                except Exception:
                    log.exception("resetting the degradation ladder at stop raised (ignored)")
            if self._callbacks:
                await asyncio.gather(*self._callbacks, return_exceptions=True)
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    # ---- sessions ------------------------------------------------------------------------------
    def add(self, session: Session, on_output: OutputCallback | None = None) -> None:
        """Serve ``session`` from now on. ``on_output(session)`` runs on the loop after each step
        that touched it (read ``session.events()`` there), and once more if the session fails."""
        if self._stopping:
            raise SessionClosed(f"the scheduler is stopping; session {session.id} was not added")
        if session not in self._members:
            self._members[session] = Member(session, on_output, self.clock.now())
        self._signal()

    def wake(self, session: Session) -> None:
        """Tell the scheduler ``session`` received audio or eof. Unknown sessions are ignored."""
        member = self._members.get(session)
        if member is not None:
            member.note_arrival(self.clock.now())
            self._woken.add(member)
            self._signal()

    def remove(self, session: Session) -> None:
        """Stop serving ``session`` (idempotent). A step already in flight finishes without it."""
        self._members.pop(session, None)

    def add_step_listener(self, listener: StepListener) -> None:
        """Call ``listener(batch_size, seconds)`` on the loop after every batched step (metrics)."""
        self._step_listeners.append(listener)

    @property
    def sessions(self) -> tuple[Session, ...]:
        return tuple(self._members)

    # ---- waiting (tests and simulations) -------------------------------------------------------
    @property
    def idle(self) -> bool:
        """True when the loop found no ready session and has nothing in flight."""
        return self._idle

    async def wait_progress(self) -> None:
        """Return after the next step finishes, or at once if no session is ready (idle)."""
        assert self._progress is not None, "call start() first"
        async with self._progress:
            if self._idle:
                return
            await self._progress.wait()

    async def wait_idle(self) -> None:
        """Return once no session is ready and no step is in flight."""
        while not self._idle:
            await self.wait_progress()

    # ---- the loop ------------------------------------------------------------------------------
    def _signal(self) -> None:
        self._idle = False
        if self._wakeup is not None:
            self._wakeup.set()

    async def _notify(self) -> None:
        assert self._progress is not None
        async with self._progress:
            self._progress.notify_all()

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            try:
                self._wakeup.clear()
                self._woken.clear()  # this scan sees every session
                ready = self._ready_members()
                if not ready or (self._stopping and not self._drain):
                    self._idle = True
                    await self._notify()
                    if self._stopping:
                        return
                    await self._wakeup.wait()
                    continue
                await self._gather(ready)
                ready = self._ready_members()
                if ready:
                    await self._step(self._pick(ready))
                await self._notify()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop every session
                log.exception("scheduler loop error (continuing)")
                await asyncio.sleep(0.01)

    def _ready_members(self) -> list[Member]:
        """Sessions with a step to do. A closed session with none left is ended here (its stream
        finished without needing another step), delivered, and dropped."""
        ready = []
        now = self.clock.now()
        for m in list(self._members.values()):
            try:
                if m.session.ready():
                    m.note_ready(now)
                    ready.append(m)
                elif m.session.closed:
                    if m.session.finish_if_done():  # never steps the model on the loop
                        self._deliver(m)
                        self._members.pop(m.session, None)
            except Exception as e:
                self._fail(m, e, "is_ready")
        return ready

    def _deadline(self, m: Member) -> float:
        since = m.ready_since if m.ready_since is not None else self.clock.now()
        return since + self.settings.latency_budget_ms / 1000.0

    async def _gather(self, ready: list[Member]) -> None:
        """Wait up to max_wait_ms for more sessions to become ready, within the most urgent slack."""
        wait_ms = self.settings.max_wait_ms
        if not wait_ms or self._stopping:
            return
        assert self._wakeup is not None
        cap = self.settings.max_batch_size or len(self._members)
        until = self.clock.now() + wait_ms / 1000.0
        in_batch = set(map(id, ready))
        first_deadline = min(self._deadline(m) for m in ready)
        most = min(cap, len(self._members))
        while len(in_batch) < most:
            now = self.clock.now()
            # the step that may follow holds at most every live session, not max_batch_size of them
            remaining = min(until - now, first_deadline - now - self._step_time.predict(most))
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except (asyncio.TimeoutError, TimeoutError):
                return
            for m in self._woken:  # only the sessions woken meanwhile can have become ready
                if id(m) not in in_batch and self._members.get(m.session) is m and m.session.ready():
                    in_batch.add(id(m))
            self._woken.clear()

    def _pick(self, ready: list[Member]) -> list[tuple[Member, float]]:
        now = self.clock.now()
        for m in ready:
            m.max_lag_ms = max(m.max_lag_ms, m.lag_ms(now))
        ordered = sorted(((self._deadline(m), i, m) for i, m in enumerate(ready)), key=lambda x: x[:2])
        n = choose_batch_size([d for d, _, _ in ordered], now, self._step_time, self.settings.max_batch_size)
        return [(m, d) for d, _, m in ordered[:n]]

    async def _step(self, batch: list[tuple[Member, float]]) -> None:
        streams = [m.session.begin_step() for m, _ in batch]  # input now staged until complete_step
        consumed_before = [s.consumed_ms for s in streams]
        loop = asyncio.get_running_loop()
        seconds, failures = await loop.run_in_executor(self._executor, self._step_isolating, streams)
        now = self.clock.now()
        self._busy.observe(now - seconds, now)
        if not failures:
            self._step_time.observe(len(batch), seconds)
        self._steps += 1
        self._streams_stepped += len(batch)
        self._batch_sizes[len(batch)] += 1
        for listener in self._step_listeners:
            try:
                listener(len(batch), seconds)
            except Exception:
                log.exception("step listener raised (ignored)")
        for i, (m, deadline) in enumerate(batch):
            if self._members.get(m.session) is not m:
                try:  # removed while the step ran: unstage its input, deliver nothing
                    m.session.complete_step(seconds)
                except Exception:
                    log.exception("complete_step of removed session %s raised (ignored)", m.session.id)
                continue
            if i in failures:
                self._fail(m, failures[i], f"step (batch of {len(batch)})")
                continue
            if now > deadline:
                m.deadline_misses += 1
                self._deadline_misses += 1
            try:
                m.session.complete_step(seconds)
            except Exception as e:
                self._fail(m, e, "complete_step")
                continue
            m.steps += 1
            m.after_step(now, consumed_before[i])
            self._deliver(m)
            if m.session.ended:
                self._members.pop(m.session, None)
        self._adjust_degradation(now)

    # ---- worker thread -------------------------------------------------------------------------
    def _step_isolating(self, streams: Sequence[ModelStream]) -> tuple[float, dict[int, Exception]]:
        """Runs in the worker thread: one batched step, split on failure (``isolation.py``).
        Returns (seconds, failures)."""
        t0 = self.clock.now()
        failures = step_isolating(self.model, streams)
        return self.clock.now() - t0, failures

    # ---- outcomes ------------------------------------------------------------------------------
    def _deliver(self, m: Member) -> None:
        if m.on_output is None:
            return
        try:
            result = m.on_output(m.session)
            if inspect.isawaitable(result):
                fut = asyncio.ensure_future(result)
                self._callbacks.add(fut)
                fut.add_done_callback(self._callback_done)
        except Exception:
            log.exception("on_output callback of session %s raised (ignored)", m.session.id)

    def _callback_done(self, fut: asyncio.Future) -> None:
        self._callbacks.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.error("on_output callback raised (ignored): %r", fut.exception())

    def _fail(self, m: Member, error: BaseException, where: str) -> None:
        self._failed += 1
        self._members.pop(m.session, None)
        log.error("session %s failed in %s: %r", m.session.id, where, error, exc_info=error)
        m.session.fail(
            ModelStepError(f"model {where} failed for session {m.session.id}: {type(error).__name__}: {error}")
        )
        self._deliver(m)

    def _adjust_degradation(self, now: float) -> None:
        ready = self._ready_members()
        self._worst_lag_ms = max((m.lag_ms(now) for m in ready), default=0.0)
        self._busy_fraction = self._busy_fraction_at(now)
        level = self._controller.decide(
            self.degradation.level, self.degradation.max_level, self._worst_lag_ms, now, len(self._members),
            self._busy_fraction,
        )
        if level != self.degradation.level:
            try:
                self.degradation.set_level(self.model, level)  # between steps: none is in flight
            except Exception:
                log.exception("degradation knob failed at level %d (ladder left as is)", level)
            self._step_time.reset()
            self._level_history.append((round(now - self._started_at, 3), self.degradation.level))

    def _busy_fraction_at(self, now: float) -> float | None:
        """The busy fraction over the last busy window, measured from the last level change on."""
        since = self._controller.last_change
        return self._busy.fraction(now, self.settings.degrade_busy_window_ms / 1000.0,
                                   self._started_at if since is None else since)

    # ---- report --------------------------------------------------------------------------------
    def saturation(self) -> str | None:
        """Why one more stream cannot be served now, or None (``degradation.saturation_reason``):
        no degradation rung left, and the model busy past ``saturation_busy_fraction`` of the
        last busy window (measured from the last level change) or a stream past its latency
        budget. Measured now, so it clears as soon as streams leave or the host speeds up."""
        if not self._members:
            return None
        now = self.clock.now()
        ladder_on = self.settings.degrade_high_water_ms is not None and self.degradation.max_level > 0
        return saturation_reason(
            rungs_left=self.degradation.max_level - self.degradation.level if ladder_on else None,
            busy=self._busy_fraction_at(now), busy_limit=self.settings.saturation_busy_fraction,
            window_s=self.settings.degrade_busy_window_ms / 1000.0,
            worst_lag_ms=max((m.lag_ms(now) for m in self._members.values()), default=0.0),
            lag_limit_ms=self.settings.latency_budget_ms,
        )

    def session_stats(self, session: Session) -> dict | None:
        """lag_ms (how long its next step has waited, 0 when not ready), max_lag_ms, backlog_ms
        (media received but not processed), steps, deadline_misses; None if not scheduled."""
        m = self._members.get(session)
        return None if m is None else self._member_stats(m, self.clock.now())

    def _member_stats(self, m: Member, now: float) -> dict:
        s = m.stream
        return {
            "lag_ms": round(m.lag_ms(now), 1),
            "max_lag_ms": round(m.max_lag_ms, 1),
            "backlog_ms": round(s.received_ms - s.consumed_ms, 1),
            "steps": m.steps,
            "deadline_misses": m.deadline_misses,
        }

    def stats(self) -> dict:
        """A snapshot: counts, batch sizes, the step-time fit, lag per session, degradation level."""
        now = self.clock.now()
        a, c = self._step_time.coefficients()
        per_session = {m.session.id: self._member_stats(m, now) for m in self._members.values()}
        return {
            "sessions": len(self._members),
            "steps": self._steps,
            "streams_stepped": self._streams_stepped,
            "batch_size_mean": round(self._streams_stepped / self._steps, 2) if self._steps else 0.0,
            "batch_size_max": max(self._batch_sizes, default=0),
            "batch_sizes": dict(sorted(self._batch_sizes.items())),
            "step_time": {"fixed_ms": round(1000 * a, 2), "per_stream_ms": round(1000 * c, 3),
                          "observations": self._step_time.observations},
            "deadline_misses": self._deadline_misses,
            "failed_sessions": self._failed,
            "worst_lag_ms": round(self._worst_lag_ms, 1),
            "busy_fraction": None if self._busy_fraction is None else round(self._busy_fraction, 3),
            "saturation": self.saturation(),
            "degradation": {
                "level": self.degradation.level,
                "max_level": self.degradation.max_level,
                "active": list(self.degradation.active),
                "changes": self._controller.changes,
                "history": [list(h) for h in self._level_history],
            },
            "per_session": per_session,
        }
