"""Joins one ``ServerProtocol`` to the scheduler and to an outgoing message channel.

Shared by the WebSocket and the WebRTC transports: they feed client input to the protocol and call
``after_input()``; the scheduler calls ``on_output`` after each step; a sender task drains the
bounded send queue into ``send`` and finally calls ``close``. A client that stops reading fills the
queue (superseded partials are dropped first, never commits); past ``send_queue_high_water`` the
session is dropped and the link closed with 1008 ``slow_client``, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from streamrt.errors import StreamrtError
from streamrt.server.metrics import ServerStats, log_session_end
from streamrt.server.protocol import ServerProtocol
from streamrt.server.settings import ServerSettings

if TYPE_CHECKING:
    from streamrt.scheduler import Scheduler

log = logging.getLogger("streamrt.server")


class QueueBridge:
    """What both bridges (captions, here; dialogue, ``streamrt.server.dialogue_bridge``) share: the
    bounded send queue, its ``slow_client`` limit, error accounting, the sender loop and closing.

    A bridge sets ``proto``, ``settings``, ``stats``, ``queue``, ``_close``, ``_wakeup``, ``_tasks``,
    ``_end_reason``, ``closed`` and ``_last_input_s`` (the event loop's time, set again by every
    ``after_input``) in its ``__init__``, and implements ``after_input()``, ``_detach()`` (the
    session is over: account for it, once) and ``_send_one(msg)``."""

    proto: Any
    settings: ServerSettings
    stats: ServerStats
    queue: deque
    _close: Callable[[int, str], Awaitable[None]]
    _wakeup: asyncio.Event
    _tasks: list[asyncio.Task]
    _end_reason: str | None
    closed: asyncio.Event
    _last_input_s: float

    def idle_for_s(self) -> float:
        """Seconds since the transport last reported input (after_input)."""
        return asyncio.get_running_loop().time() - self._last_input_s

    def after_input(self) -> None:
        raise NotImplementedError

    def _detach(self) -> None:
        raise NotImplementedError

    async def _send_one(self, msg: Any) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        self.proto.shutdown()
        self.after_input()

    def connection_lost(self) -> None:
        """The client vanished: drop the session and stop sending."""
        if self.proto.state != "closed":
            self.stats.disconnected_early += 1
        self.proto.connection_lost()
        self._detach()
        self.queue.clear()
        for t in self._tasks:
            t.cancel()
        self.closed.set()

    async def wait_closed(self) -> None:
        await self.closed.wait()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _count_error(self, msg: dict) -> None:
        """An ``error`` message on its way out: counted; the first fatal one is the end reason."""
        self.stats.error(msg["code"])
        if msg["fatal"] and self._end_reason is None:
            self._end_reason = msg["code"]

    def _after_queueing(self) -> None:
        """After queueing the protocol's messages: detach once it closed, enforce the queue limit,
        wake the sender."""
        if self.proto.close is not None:
            self._detach()
        limit = self.settings.send_queue_high_water
        self.stats.max_send_queue = max(self.stats.max_send_queue, len(self.queue))
        if limit is not None and len(self.queue) > limit and not self.closed.is_set():
            self._slow_client(limit)
            return
        self._wakeup.set()

    def _slow_client(self, limit: int) -> None:
        self.stats.closed_slow_client += 1
        self.stats.error("slow_client")
        self._end_reason = self._end_reason or "slow_client"
        n = len(self.queue)
        self.proto.abort(
            StreamrtError(
                f"client is not reading: {n} messages queued, over the limit of {limit} (setting send_queue_high_water)",
                code="slow_client",
            )
        )
        self._detach()
        self.queue.clear()
        for t in self._tasks:
            t.cancel()
        self._tasks.append(asyncio.create_task(self._close_now(*self.proto.close)))

    async def _close_now(self, code: int, reason: str) -> None:
        try:
            await self._close(code, reason)
        finally:
            self.closed.set()

    async def _send_loop(self) -> None:
        try:
            while True:
                while self.queue:
                    await self._send_one(self.queue.popleft())
                if self.proto.close is not None:  # everything sent: close with the protocol's code
                    await self._close(*self.proto.close)
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the link broke while sending: the receiver sees it too
            log.debug("send failed: %r", e)
            self.queue.clear()
            self._detach()
        finally:
            if self.proto.close is not None:
                self.closed.set()


class SessionBridge(QueueBridge):
    def __init__(
        self,
        proto: ServerProtocol,
        scheduler: "Scheduler",
        settings: ServerSettings,
        stats: ServerStats,
        send: Callable[[str], Awaitable[None]],
        close: Callable[[int, str], Awaitable[None]],
    ):
        self.proto = proto
        self.scheduler = scheduler
        self.settings = settings
        self.stats = stats
        self._send = send
        self._close = close
        self.queue: deque[dict] = deque()
        self._wakeup = asyncio.Event()
        self._session = None  # the session while it is in the scheduler
        self._video = None  # its video session (lip activity) while it is in the scheduler
        self._tasks: list[asyncio.Task] = []
        self._retry: asyncio.TimerHandle | None = None
        self.closed = asyncio.Event()  # set once the link is closed (or lost)
        self._last_input_s = asyncio.get_running_loop().time()  # the transport's clock (event loop)
        self._started_s: float | None = None  # when the session joined the scheduler
        self._end_reason: str | None = None  # the code of the first fatal error sent, if any

    # ---- called by the transport ---------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._send_loop())]

    def after_input(self) -> None:
        """Call after every protocol call the transport made (receive_*, stop, fail, shutdown)."""
        self._last_input_s = asyncio.get_running_loop().time()
        s = self.proto.session
        if s is not None and self._session is None and not s.ended and self.proto.state != "closed":
            try:
                req = self.proto.start_request
                self.scheduler.add(s, on_output=self.on_output, background=req is not None and req.background)
            except StreamrtError as e:  # the scheduler is stopping
                self.proto.abort(StreamrtError(e.message, code="shutting_down"))
                self.stats.refused("shutting_down")
                self._flush()
                return
            self._session = s
            self._started_s = self._last_input_s
            self.stats.session_started()
            if s.video is not None:
                self.scheduler.add(s.video, on_output=self.on_video_output, model=self.proto.video_model)
                self._video = s.video
        if self._video is not None:
            self.scheduler.wake(self._video)
        if self._session is not None:
            no_step_in_flight = self.scheduler.idle
            self.scheduler.wake(self._session)
            if no_step_in_flight:  # the scheduler cannot start a step before we yield
                self._finish_if_done()
            elif not self._session.ready():
                self._schedule_finish()
        self._flush()

    # ---- called by the scheduler -----------------------------------------------------------------
    def on_output(self, session) -> None:
        if session is not self._session:
            return
        self._finish_if_done()  # the scheduler calls us between steps: nothing of ours is in flight
        self.proto.collect()
        self._flush()

    def on_video_output(self, session) -> None:
        if session is self._video:
            self.proto.collect()
            self._flush()

    def _finish_if_done(self) -> None:
        """A stopped session whose stream has nothing left to step gets no more steps, so nothing
        would emit its ``end``: emit it here. Only call when no step of this session is in flight
        (a step still running could hold commits not yet collected)."""
        s = self._session
        if s is None or s.ended or not s.closed or s.ready():
            return
        s.finish_if_done()  # never steps the model on the loop
        self.proto.collect()

    def _schedule_finish(self) -> None:
        """The scheduler is busy: check again shortly, when it reports no step in flight."""
        s = self._session
        if s is not None and s.closed and not s.ended and self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(0.02, self._retry_finish)

    def _retry_finish(self) -> None:
        self._retry = None
        if self.scheduler.idle:
            self._finish_if_done()
            self._flush()
        else:
            self._schedule_finish()

    # ---- internals ---------------------------------------------------------------------------------
    def _detach(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._video is not None:  # its face tracker is freed at the next step boundary
            video, self._video = self._video, None
            self.scheduler.cancel(video)
            self.scheduler.remove(video)
        if self._session is not None:
            s, self._session = self._session, None
            reason = self._end_reason or ("end" if s.ended else "connection_lost")
            audio_s = s.stream.received_ms / 1000.0
            self.stats.session_ended(reason, s.ended, audio_s)
            log_session_end(s, reason, self.proto.close, self._duration_s(), self.scheduler.session_stats(s))
            self.scheduler.remove(s)

    def _duration_s(self) -> float:
        if self._started_s is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._started_s

    def _flush(self) -> None:
        for msg in self.proto.data_to_send():
            if msg["type"] == "partial" and self.queue:
                # a newer partial supersedes queued ones; commits are never dropped
                kept = [m for m in self.queue if m["type"] != "partial"]
                if len(kept) != len(self.queue):
                    self.queue = deque(kept)
            elif msg["type"] == "commit":
                self.stats.committed(msg["words"])
            elif msg["type"] == "error":
                self._count_error(msg)
            self.queue.append(msg)
        self._after_queueing()

    async def _send_one(self, msg: dict) -> None:
        await self._send(json.dumps(msg, separators=(",", ":")))
