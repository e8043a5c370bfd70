"""What every transport of the server shares: the model, the scheduler, admission and health.

``SessionHub`` holds no socket. A transport (``streamrt.server.ws`` on websockets,
``streamrt.server.asgi`` on any ASGI server) asks ``admit()`` before a session starts, makes its
``ServerProtocol`` with ``new_protocol()``, ``register``s the ``SessionBridge`` that joins it to the
scheduler and ``unregister``s it when the link is gone. ``drain()`` is the first half of a graceful
stop: every live session commits, sends ``end`` and closes 1001, while the transport keeps listening
so that ``/healthz`` answers 503 and new clients get ``shutting_down`` (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Awaitable, Callable

from streamrt.clock import Clock, MonotonicClock
from streamrt.engine import Describable, StreamingModel
from streamrt.errors import StreamrtError
from streamrt.scheduler import Scheduler
from streamrt.server.bridge import SessionBridge
from streamrt.server.dialogue_bridge import DialogueBridge
from streamrt.server.dialogue_protocol import DialogueAgent, DialogueProtocol
from streamrt.server.metrics import ServerStats, render
from streamrt.server.protocol import ServerProtocol, close_code_for, error_message
from streamrt.server.settings import ServerSettings
from streamrt.types import PRECISION_KEYS

@dataclass(frozen=True)
class Dropped:
    """A client message of at least ``size`` bytes that the transport dropped unread (over
    ``max_message_bytes``); the protocol answers it ``message_too_big``."""

    size: int


# a transport's receive: the next client message as (is_text, raw bytes), Dropped(size) for one over
# max_message_bytes that the transport did not keep, or None once the link closed
Receive = Callable[[], Awaitable["tuple[bool, bytes] | Dropped | None"]]


class HandshakeGate:
    """Counts connections in their opening handshake; ``limit`` None: no bound (setting max_handshakes)."""

    def __init__(self, limit: int | None, stats: ServerStats):
        self.limit = limit
        self.open = 0
        self.refused = 0
        self.stats = stats

    def enter(self) -> bool:
        if self.limit is not None and self.open >= self.limit:
            self.refused += 1
            self.stats.refused("max_handshakes")
            return False
        self.open += 1
        return True

    def admit(self, transport) -> bool:
        """``enter()`` for a connection just made; past the limit, answer it 503 (``refusal()``,
        before the request is read: HTTP allows it) and close its ``transport``."""
        if self.enter():
            return True
        transport.write(self.refusal())
        transport.close()
        return False

    def leave(self) -> None:
        self.open -= 1

    def refusal(self) -> bytes:
        body = (
            f"server busy: {self.open} connections are in their opening handshake, the limit is "
            f"{self.limit} (setting max_handshakes); try again later\n"
        ).encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + body


class SessionHub:
    """One shared model served to many concurrent sessions, whatever carries them.

    ``scheduler``: a ``streamrt.scheduler.Scheduler`` serving ``model`` (possibly beside other
    models); by default one is created for ``model`` and owned (started and stopped) by the hub.
    ``agent``: the voice agent served on ``/v1/dialogue`` (its models join the hub's scheduler,
    beside ``model``, which its sessions use as their ASR); None: that endpoint refuses.
    ``video_model``: scores the camera frames of sessions started with ``"video": true`` (a
    ``streamrt.tasks.lips.LipActivityModel``), on the same scheduler (added to it at start).
    """

    def __init__(
        self,
        model: StreamingModel,
        *,
        settings: ServerSettings = ServerSettings(),
        scheduler: Scheduler | None = None,
        clock: Clock | None = None,
        agent: DialogueAgent | None = None,
        video_model: StreamingModel | None = None,
    ):
        self.model = model
        self.agent = agent
        self.video_model = video_model
        self.settings = settings
        self.clock = clock or MonotonicClock()
        self._scheduler = scheduler
        self._owns_scheduler = scheduler is None
        self.stats = ServerStats()
        self._bridges: set[SessionBridge | DialogueBridge] = set()
        self._signalling = 0  # admitted WebRTC connections still negotiating (count toward max_sessions)
        self._ready = False
        self._draining = False
        self._listening = False  # stats.step is a step listener of the scheduler

    @property
    def scheduler(self):
        return self._scheduler

    @property
    def draining(self) -> bool:
        return self._draining

    # ---- lifecycle -----------------------------------------------------------------------------
    async def start_sessions(self) -> None:
        """Start the scheduler (when owned) and admit sessions."""
        if self._scheduler is None:
            self._scheduler = Scheduler(self.model, clock=self.clock)
            for name, model in (self.agent.models() if self.agent is not None else {}).items():
                self._scheduler.add_model(model, name=name)
        if self.video_model is not None and self.video_model not in self._scheduler.models:
            self._scheduler.add_model(self.video_model, name="lips")
        if self._owns_scheduler:
            await self._scheduler.start()
        if not self._listening:
            self._scheduler.add_step_listener(self.stats.step)
            self._listening = True
        self._draining = False
        self._ready = True

    async def drain(self) -> None:
        """Refuse new sessions; let every live one commit and send ``end``, for at most
        ``shutdown_timeout_s``. The transport should still be listening."""
        self._draining = True
        self._ready = False
        for bridge in list(self._bridges):
            bridge.shutdown()
        pending = [asyncio.create_task(b.wait_closed()) for b in self._bridges]
        if pending:
            _, not_done = await asyncio.wait(pending, timeout=self.settings.shutdown_timeout_s)
            for t in not_done:
                t.cancel()

    async def stop_sessions(self) -> None:
        """After ``drain`` and after the transport stopped: stop the scheduler (when owned)."""
        if self._owns_scheduler and self._scheduler is not None:
            await self._scheduler.stop()

    # ---- sessions ------------------------------------------------------------------------------
    def admit(self) -> StreamrtError | None:
        """None if a new session may start now, else the error to send before closing (counted
        in ``stats`` as a refusal and as an error sent)."""
        refusal = self._refusal()
        if refusal is not None:
            self.stats.error(refusal.code)
        return refusal

    def _refusal(self) -> StreamrtError | None:
        if self._draining:
            self.stats.refused("shutting_down")
            return StreamrtError("server is shutting down; try another replica or later", code="shutting_down")
        if not self._ready:
            self.stats.refused("starting")
            return StreamrtError("server is starting; try again shortly", code="server_busy")
        limit = self.settings.max_sessions
        open_now = len(self._bridges) + self._signalling
        if limit is not None and open_now >= limit:
            self.stats.refused("max_sessions")
            return StreamrtError(
                f"server busy: {open_now} sessions open, the limit is {limit} (setting max_sessions); "
                "try again later",
                code="server_busy",
            )
        if self.settings.refuse_when_saturated and self._scheduler is not None:
            reason = self._scheduler.saturation()
            if reason is not None:
                self.stats.refused("saturated")
                return StreamrtError(
                    f"server busy: {reason}; try again later (setting refuse_when_saturated)", code="server_busy"
                )
        return None

    def new_protocol(self) -> ServerProtocol:
        return ServerProtocol(self.model, self.clock, self.settings, video_model=self.video_model)

    def dialogue_refusal(self) -> StreamrtError | None:
        """None if a dialogue may start now, else why not: no agent (``dialogue_unavailable``), or as
        many dialogues open as the agent holds at once (``server_busy``, its ``max_dialogues``)."""
        if self.agent is None:
            return StreamrtError("this server runs no voice agent (see docs/protocol.md, Dialogue)",
                                 code="dialogue_unavailable")
        limit = self.agent.max_dialogues
        open_now = sum(isinstance(b, DialogueBridge) for b in self._bridges)
        if limit is not None and open_now >= limit:
            self.stats.refused("max_sessions")
            return StreamrtError(f"server busy: {open_now} dialogues open, the agent holds {limit} at once "
                                 "(its LLM's KV-cache slots, agent setting llm_slots); try again later",
                                 code="server_busy")
        return None

    async def serve_dialogue(
        self, send_text: Callable[[str], Awaitable[None]], send_bytes: Callable[[bytes], Awaitable[None]],
        close: Callable[[int, str], Awaitable[None]], recv: Receive,
    ) -> None:
        """Run one admitted ``/v1/dialogue`` session over a link (``send_bytes`` carries the agent's
        audio). Returns once the link is closed (or lost)."""
        refusal = self.dialogue_refusal()
        if refusal is not None:
            await send_text(json.dumps(error_message(refusal.code, refusal.message, True)))
            await close(close_code_for(refusal.code), refusal.code)
            return
        updated = asyncio.Event()
        proto = DialogueProtocol(self.agent, self._scheduler, self.settings, on_update=updated.set)
        bridge = DialogueBridge(proto, self.settings, self.stats, send_text, send_bytes, close, updated=updated)
        self.register(bridge)
        bridge.start()
        try:
            await receive_loop(recv, proto, bridge, self.settings)
        finally:
            if proto.state != "closed":
                bridge.connection_lost()
            try:
                await asyncio.wait_for(bridge.wait_closed(), self.settings.close_timeout_s or 1.0)
            except TimeoutError:
                bridge.connection_lost()
            self.unregister(bridge)

    def register(self, bridge: SessionBridge | DialogueBridge) -> None:
        self._bridges.add(bridge)
        self.stats.connections_active = len(self._bridges)

    def unregister(self, bridge: SessionBridge | DialogueBridge) -> None:
        self._bridges.discard(bridge)
        self.stats.connections_active = len(self._bridges)

    async def serve_session(
        self, send: Callable[[str], Awaitable[None]], close: Callable[[int, str], Awaitable[None]], recv: Receive
    ) -> None:
        """Run one admitted protocol-v1 session over a link: ``send(text)``, ``close(code, reason)``
        and ``recv()``. Returns once the link is closed (or lost) and the session left the scheduler."""
        proto = self.new_protocol()
        bridge = SessionBridge(proto, self._scheduler, self.settings, self.stats, send, close)
        self.register(bridge)
        bridge.start()
        try:
            await receive_loop(recv, proto, bridge, self.settings)
        finally:
            if proto.state != "closed":  # the client vanished before end
                bridge.connection_lost()
            try:
                await asyncio.wait_for(bridge.wait_closed(), self.settings.close_timeout_s or 1.0)
            except TimeoutError:
                bridge.connection_lost()
            self.unregister(bridge)

    def hold_signalling(self):
        """Count a WebRTC connection still negotiating toward ``max_sessions``; returns ``release``,
        to call once its session registered (or it gave up). Calling it twice is harmless."""
        self._signalling += 1
        held = [True]

        def release() -> None:
            if held[0]:
                held[0] = False
                self._signalling -= 1

        return release

    # ---- observability -------------------------------------------------------------------------
    def metrics_text(self) -> tuple[bytes, str]:
        """``GET /metrics``: (body, content type) of the Prometheus exposition of ``stats``, with
        the load gauges from the scheduler and the model's name, preset and precision."""
        d = dict(self.model.describe()) if isinstance(self.model, Describable) else {}
        info = {"model": self.settings.model_name or d.get("model"), "preset": d.get("preset"),
                "precision": d.get("precision")}
        return render(self.stats, None if self._scheduler is None else self._scheduler.stats(), info)

    # ---- health --------------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict]:
        """(ready, details) for ``GET /healthz``: 200 when ready, 503 while starting or draining."""
        status = "ok" if self._ready else ("draining" if self._draining else "starting")
        details = {
            "status": status,
            "sessions": len(self._bridges),
            "max_sessions": self.settings.max_sessions,
            "model": self.settings.model_name,
        }
        if self.settings.replica_id is not None:
            details["replica"] = self.settings.replica_id
        if isinstance(self.model, Describable):  # as the ready message's settings: which
            d = self.model.describe()  # configuration and precision this replica runs, and why
            details.update({k: d[k] for k in ("preset",) if d.get(k) is not None})
            if "precision" in d:
                details["precision"] = {k: d[k] for k in PRECISION_KEYS if k in d}
        if self._scheduler is not None:  # how loaded the machine is, for load balancers and dashboards
            st = self._scheduler.stats()
            details["load"] = {
                "busy_fraction": st.get("busy_fraction"),
                "worst_lag_ms": st.get("worst_lag_ms"),
                "degradation_level": st.get("degradation", {}).get("level"),
                "degradation_active": st.get("degradation", {}).get("active"),
                "saturation": st.get("saturation"),
            }
        return self._ready, details


async def receive_loop(recv: Receive, proto: ServerProtocol | DialogueProtocol, bridge: SessionBridge | DialogueBridge,
                       settings: ServerSettings) -> None:
    """Feed client messages to the protocol until the link closes, enforcing ``start_timeout_s``
    (not moved by other messages) and ``idle_timeout_s``."""
    idle = settings.idle_timeout_s
    start_s = settings.start_timeout_s
    loop = asyncio.get_running_loop()
    start_by = None if start_s is None else loop.time() + start_s
    while True:
        timeout = idle
        if start_by is not None and proto.state == "await_start":
            left = max(0.0, start_by - loop.time())
            timeout = left if timeout is None else min(timeout, left)
        try:
            async with asyncio.timeout(timeout):
                got = await recv()
        except TimeoutError:
            if proto.state == "await_start" and start_by is not None and loop.time() >= start_by:
                msg = f"no start message within {start_s:g} s of connecting (setting start_timeout_s)"
                proto.fail(StreamrtError(msg, code="start_timeout"))
                bridge.after_input()
            elif proto.state in ("await_start", "streaming", "talking"):
                msg = f"no message from the client for {idle:g} s (setting idle_timeout_s)"
                proto.fail(StreamrtError(msg, code="idle_timeout"))
                bridge.after_input()
            continue
        if got is None:
            return
        if isinstance(got, Dropped):
            proto.receive_too_big(got.size)
            bridge.after_input()
            continue
        is_text, data = got
        if is_text:
            proto.receive_text(data)  # bytes: the protocol checks UTF-8 (not_utf8, 1007)
        else:
            proto.receive_binary(data)
        bridge.after_input()


class ListeningHub(SessionHub):
    """A ``SessionHub`` that listens on ``host:port``: what the built-in transports
    (``asgi_server.AsgiServer``, ``ws.StreamServer``) share. ``port=0`` picks a free port (read
    ``server.port`` after ``start()``). A subclass implements ``start`` (listen, start the
    scheduler) and ``stop`` (drain while listening, then stop listening)."""

    def __init__(
        self,
        model: StreamingModel,
        *,
        settings: ServerSettings = ServerSettings(),
        scheduler: Scheduler | None = None,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 8765,
        agent: DialogueAgent | None = None,
        video_model: StreamingModel | None = None,
    ):
        super().__init__(model, settings=settings, scheduler=scheduler, clock=clock, agent=agent,
                         video_model=video_model)
        self.host = host
        self.port = port
        self.handshakes = HandshakeGate(settings.max_handshakes, self.stats)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Future()
        finally:
            await self.stop()
