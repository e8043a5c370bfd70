"""One asyncio scheduler for every session's model work, for several models at once.

    sched = Scheduler(asr_model, clock=MonotonicClock(), settings=SchedulerSettings(...))
    sched.add_model(llm_model, name="llm")  # more models share the same worker thread
    await sched.start()
    sched.add(session, on_output=callback)  # callback(session) runs on the loop after a step touched it
    sched.add(chat, model=llm_model)        # a session of another model
    sched.add(upload, background=True)      # batch work: stepped in real-time streams' slack
    session.receive_audio(x); sched.wake(session)   # after feeding input or eof
    sched.cancel(chat)                      # frees its stream's slot at the next step boundary
    sched.remove(session)                   # any time; idempotent
    await sched.stop()                      # finishes the ready work, then stops

The loop picks the ready sessions and, per model, orders them by deadline (when their next step
became available plus the stream's budget, ``Urgency.budget_ms`` or else ``latency_budget_ms``; see
``member.py``) and chooses a batch with ``batching.choose_batch_size``. Of the models' batches it
steps one (``ordering.choose_candidate``: a batch about to miss its deadline first, else the higher
priority, else the earlier deadline), running ``model.step(streams)`` in the single worker thread
that all models share (torch releases the GIL, so the loop keeps serving sockets meanwhile; one step
in flight on the machine). Then, on the loop, ``session.complete_step(seconds)`` for each stream of
the batch (each experienced the batch's full wall time) and the session's callback. After each step
the worst lag of each model and the machine's busy fraction (the share of recent wall time spent
stepping any model) feed each model's degradation ladder (``degradation.py``).

Background work (``add(..., background=True)``: an upload fed faster than real time, a batch job)
is a lower class: its streams have no deadline, are stepped only when no real-time stream is ready,
except that while they have work they get at least ``background_min_share`` of the stepping time
(measured over the busy window), so a steady real-time overload slows them but never starves them.
Background and real-time streams are never in one batch. Their lag is not overload and their steps
do not count in the busy fraction: the ladder (and ``saturation``) exist to keep real-time streams
real-time, and background work yields instead. Only the background steps that went *before* a
ready real-time stream (its owed share) take time away from real-time work; the busy fraction is
therefore real-time stepping time over the wall time those forced steps left.

Threading contract: ``add``/``wake``/``cancel``/``remove``/``stats`` are called on the event loop's
thread. A session's ``receive_*`` may run while its stream is inside ``model.step`` in the worker
thread; the session stages that input and hands it over when the step completes.

Failure isolation (``isolation.py``): if ``model.step`` raises, the batch is split and retried until
the failing stream is alone (or at once, when the exception carries the failing stream as
``exc.stream``); that session gets a fatal ``ModelStepError`` and leaves; the others go on, and so
do the other models' sessions. A model should therefore validate before it mutates, so a retried
stream is not stepped twice.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from streamrt.clock import Clock
from streamrt.engine import ModelStream, StreamingModel
from streamrt.errors import ConfigError, ModelStepError, SessionClosed
from streamrt.scheduler.batching import choose_batch_size
from streamrt.scheduler.degradation import BusyMeter, Degradation
from streamrt.scheduler.isolation import step_isolating
from streamrt.scheduler.lane import Lane
from streamrt.scheduler.member import Member, OutputCallback
from streamrt.scheduler.ordering import Candidate, choose_candidate
from streamrt.scheduler.report import SchedulerReport
from streamrt.scheduler.settings import SchedulerSettings
from streamrt.stream_session import StreamSession

log = logging.getLogger("streamrt.scheduler")

StepListener = Callable[[int, float], None]  # (batch size, step seconds)


class Scheduler(SchedulerReport):
    """Batches and orders the model steps of all sessions of one or more models. See the module
    docstring. ``model``: the default model (``add`` without ``model=``); more with ``add_model``."""

    def __init__(
        self,
        model: StreamingModel | None = None,
        *,
        clock: Clock,
        settings: SchedulerSettings = SchedulerSettings(),
        degradation: Degradation | None = None,
    ):
        self.clock = clock
        self.settings = settings
        self._lanes: dict[int, Lane] = {}  # id(model) -> lane, in the order added
        self._default: Lane | None = None
        if model is not None:
            self.add_model(model, degradation=degradation)
        self._busy = BusyMeter()  # real-time steps
        self._background = BusyMeter()  # background steps
        self._forced = BusyMeter()  # background steps taken while a real-time stream was ready
        self._busy_fraction: float | None = None
        self._members: dict[StreamSession, Member] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task | None = None
        self._wakeup: asyncio.Event | None = None
        self._progress: asyncio.Condition | None = None
        self._callbacks: set[asyncio.Future] = set()
        self._woken: set[Member] = set()  # woken while gathering
        self._stopping = False
        self._drain = True
        self._idle = True
        self._deadline_misses = 0
        self._failed = 0
        self._cancelled = 0
        self._worst_lag_ms = 0.0
        self._started_at = 0.0
        self._step_listeners: list[StepListener] = []

    # ---- models --------------------------------------------------------------------------------
    def add_model(self, model: StreamingModel, *, name: str | None = None,
                  degradation: Degradation | None = None) -> None:
        """Serve ``model``'s sessions too (call before its sessions are added; the first model is
        the default). ``name``: its key in ``stats()["models"]`` (default: its class name);
        ``degradation``: its ladder (default: ``Degradation.for_model``)."""
        if id(model) in self._lanes:
            raise ConfigError(f"model {name or type(model).__name__} is already on this scheduler")
        name = name or type(model).__name__
        if any(lane.name == name for lane in self._lanes.values()):
            raise ConfigError(f"a model named {name!r} is already on this scheduler; pass another name=")
        lane = Lane(name, model, self.settings, degradation)
        self._lanes[id(model)] = lane
        if self._default is None:
            self._default = lane

    @property
    def model(self) -> StreamingModel:
        """The default model."""
        return self._lane(None).model

    @property
    def degradation(self) -> Degradation:
        """The default model's degradation ladder."""
        return self._lane(None).degradation

    @property
    def models(self) -> tuple[StreamingModel, ...]:
        return tuple(lane.model for lane in self._lanes.values())

    def _lane(self, model: StreamingModel | None) -> Lane:
        lane = self._default if model is None else self._lanes.get(id(model))
        if lane is None:
            raise ConfigError("no model given and the scheduler has none" if model is None else
                              f"{type(model).__name__} is not on this scheduler (add_model first)")
        return lane

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
            for lane in self._lanes.values():
                if lane.degradation.level:
                    try:
                        lane.degradation.set_level(lane.model, 0)  # leave the shared model as configured
                    except Exception:
                        log.exception("resetting %s's degradation ladder at stop raised (ignored)", lane.name)
            if self._callbacks:
                await asyncio.gather(*self._callbacks, return_exceptions=True)
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    # ---- sessions ------------------------------------------------------------------------------
    def add(self, session: StreamSession, on_output: OutputCallback | None = None, *,
            model: StreamingModel | None = None, background: bool = False) -> None:
        """Serve ``session`` (a ``StreamSession``: the captioning ``Session`` or any other) from now
        on, its stream stepped by ``model`` (default: the default model; others must have been
        added with ``add_model``). ``on_output(session)`` runs on the loop after each step that
        touched it (read ``session.events()`` there), and once more if the session fails or ends
        by ``cancel``. ``background``: batch work (an upload) that steps in the real-time streams'
        slack and never drives the degradation ladder (see the module docstring)."""
        if self._stopping:
            raise SessionClosed(f"the scheduler is stopping; session {session.id} was not added")
        lane = self._lane(model)
        if session not in self._members:
            self._members[session] = Member(session, lane, on_output, self.clock.now(), background)
        self._signal()

    def wake(self, session: StreamSession) -> None:
        """Tell the scheduler ``session`` received input or eof. Unknown sessions are ignored."""
        member = self._members.get(session)
        if member is not None:
            member.note_arrival(self.clock.now())
            self._woken.add(member)
            self._signal()

    def remove(self, session: StreamSession) -> None:
        """Stop serving ``session`` (idempotent). A step already in flight finishes without it."""
        self._members.pop(session, None)

    def cancel(self, session: StreamSession) -> None:
        """Cancel ``session``'s stream: it gets no further step, and its slot (what the model holds
        for it) is freed at the next step boundary, i.e. now, or when the step in flight with it
        ends. The session ends with what it produced (its callback runs) and leaves. Idempotent;
        an unknown session is cancelled without the scheduler."""
        m = self._members.get(session)
        session.cancel()  # during its step: the session cancels the stream when the step completes
        if m is None:
            return
        self._cancelled += 1
        if session.ended:  # not in a step: done now
            self._members.pop(session, None)
            self._deliver(m)
        self._signal()

    def add_step_listener(self, listener: StepListener) -> None:
        """Call ``listener(batch_size, seconds)`` on the loop after every batched step of any model
        (metrics)."""
        self._step_listeners.append(listener)

    @property
    def sessions(self) -> tuple[StreamSession, ...]:
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
                    await self._step(*self._pick(ready))
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
        return since + self._budget_s(m)

    async def _gather(self, ready: list[Member]) -> None:
        """Wait up to max_wait_ms for more sessions of the most urgent session's model to become
        ready, within its slack. No wait begins while another model's real-time streams are ready:
        the worker would idle while they wait (a lip model's frames arrive every few ms, and each
        of its waits held the ASR streams back until their deadline came near)."""
        wait_ms = self.settings.max_wait_ms
        if not wait_ms or self._stopping:
            return
        assert self._wakeup is not None
        ready = [m for m in ready if not m.background]  # background steps are not worth a wait
        if not ready:
            return
        first_deadline, lead = min(((self._deadline(m), i) for i, m in enumerate(ready)))
        lane = ready[lead].lane
        if any(m.lane is not lane for m in ready):
            return
        live = sum(1 for m in self._members.values() if m.lane is lane)
        cap = self.settings.max_batch_size or live
        until = self.clock.now() + wait_ms / 1000.0
        in_batch = {id(m) for m in ready if m.lane is lane}
        most = min(cap, live)
        while len(in_batch) < most:
            now = self.clock.now()
            # the step that may follow holds at most every live session, not max_batch_size of them
            remaining = min(until - now, first_deadline - now - lane.step_time.predict(most))
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except (asyncio.TimeoutError, TimeoutError):
                return
            for m in self._woken:  # only the sessions woken meanwhile can have become ready
                if (m.lane is lane and id(m) not in in_batch and self._members.get(m.session) is m
                        and m.session.ready()):
                    in_batch.add(id(m))
            self._woken.clear()

    def _pick(self, ready: list[Member]) -> tuple[Lane, list[tuple[Member, float]], str]:
        """Each model's batch (earliest deadlines first, sized by ``choose_batch_size``), and of
        those the one to step now (``ordering.choose_candidate``); or a background batch, when no
        real-time stream is ready or background work is owed its share. The third item says which:
        "realtime", "background" or "owed" (a background batch going before ready real-time work)."""
        now = self.clock.now()
        for m in ready:
            m.max_lag_ms = max(m.max_lag_ms, m.lag_ms(now))
        realtime = [m for m in ready if not m.background]
        background = [m for m in ready if m.background]
        if background and (not realtime or self._background_owed(now)):
            first = min(background, key=lambda m: (m.ready_since if m.ready_since is not None else now))
            same = sorted((m for m in background if m.lane is first.lane),
                          key=lambda m: m.ready_since if m.ready_since is not None else now)
            cap = self.settings.max_batch_size or len(same)
            return first.lane, [(m, float("inf")) for m in same[:cap]], ("owed" if realtime else "background")
        by_lane: dict[int, list[Member]] = {}
        for m in realtime:
            by_lane.setdefault(id(m.lane), []).append(m)
        batches, candidates = [], []
        for members in by_lane.values():
            lane = members[0].lane
            ordered = sorted(((self._deadline(m), i, m) for i, m in enumerate(members)), key=lambda x: x[:2])
            n = choose_batch_size([d for d, _, _ in ordered], now, lane.step_time, self.settings.max_batch_size)
            batch = [(m, d) for d, _, m in ordered[:n]]
            batches.append((lane, batch))
            priority = max(m.session.stream.urgency().priority for m, _ in batch)
            candidates.append(Candidate(batch[0][1], priority, lane.step_time.predict(n)))
        lane, batch = batches[choose_candidate(candidates, now)]
        return lane, batch, "realtime"

    def _background_owed(self, now: float) -> bool:
        """Whether background streams got less than ``background_min_share`` of the stepping time of
        the last busy window (so one of their batches goes before ready real-time work)."""
        share = self.settings.background_min_share
        if share is None:
            return False
        window_s = self.settings.degrade_busy_window_ms / 1000.0
        bg = self._background.seconds(now, window_s)
        rt = self._busy.seconds(now, window_s)
        return bg < share * (bg + rt)

    async def _step(self, lane: Lane, batch: list[tuple[Member, float]], kind: str = "realtime") -> None:
        streams = [m.session.begin_step() for m, _ in batch]  # input now staged until complete_step
        consumed_before = [m.stream.consumed_ms if m.audio else 0.0 for m, _ in batch]
        loop = asyncio.get_running_loop()
        seconds, failures = await loop.run_in_executor(self._executor, self._step_isolating, lane.model, streams)
        now = self.clock.now()
        if kind == "realtime":
            self._busy.observe(now - seconds, now)
        else:
            self._background.observe(now - seconds, now)
            if kind == "owed":
                self._forced.observe(now - seconds, now)
        lane.observe_step(len(batch), seconds, failed=bool(failures))
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
                m.session.complete_step(seconds)  # a cancel asked for meanwhile happens here
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
    def _step_isolating(self, model: StreamingModel,
                        streams: Sequence[ModelStream]) -> tuple[float, dict[int, Exception]]:
        """Runs in the worker thread: one batched step, split on failure (``isolation.py``).
        Returns (seconds, failures)."""
        t0 = self.clock.now()
        failures = step_isolating(model, streams)
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
        """Each model's ladder, on its own worst lag and the machine's busy fraction."""
        ready = [m for m in self._ready_members() if not m.background]  # background lag is no overload
        self._worst_lag_ms = max((m.lag_ms(now) for m in ready), default=0.0)
        self._busy_fraction = self._busy_fraction_at(now)
        for lane in self._lanes.values():
            members = [m for m in self._members.values() if m.lane is lane and not m.background]
            lane.worst_lag_ms = max((m.lag_ms(now) for m in ready if m.lane is lane), default=0.0)
            level = lane.controller.decide(lane.degradation.level, lane.degradation.max_level, lane.worst_lag_ms,
                                           now, len(members), self._busy_fraction)
            if level != lane.degradation.level:
                try:
                    lane.degradation.set_level(lane.model, level)  # between steps: none is in flight
                except Exception:
                    log.exception("%s's degradation knob failed at level %d (ladder left as is)", lane.name, level)
                lane.step_time.reset()
                lane.level_history.append((round(now - self._started_at, 3), lane.degradation.level))
