"""The WebSocket transport (websockets 17 asyncio API): sockets, clocks and tasks around the protocol.

    server = StreamServer(model, settings=ServerSettings(max_sessions=8), host="127.0.0.1", port=0)
    await server.start()            # starts the scheduler and listens; server.url is ws://host:port
    ...
    await server.stop()             # graceful: every live session commits, sends end, closes 1001

Endpoints: ``/v1/stream`` (protocol v1, docs/protocol.md), ``/v1/webrtc`` (WebRTC signalling, needs
aiortc), ``GET /healthz``, ``GET /`` (browser page). One shared model; one ``Session`` per connection;
model steps run through the scheduler, which batches the steps of all sessions.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections import deque
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from streamrt.clock import Clock, MonotonicClock
from streamrt.engine import Describable, StreamingModel
from streamrt.errors import StreamrtError
from streamrt.server.bridge import ServerStats, SessionBridge
from streamrt.server.http import make_process_request
from streamrt.server.protocol import CloseCode, ServerProtocol, error_message
from streamrt.server.settings import ServerSettings
from streamrt.types import PRECISION_KEYS

if TYPE_CHECKING:
    from streamrt.scheduler import Scheduler

log = logging.getLogger("streamrt.server")


class HandshakeGate:
    """Counts connections in their opening handshake; ``limit`` None: no bound (setting max_handshakes)."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.open = 0
        self.refused = 0

    def enter(self) -> bool:
        if self.limit is not None and self.open >= self.limit:
            self.refused += 1
            return False
        self.open += 1
        return True

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


class StreamConnection(ServerConnection):
    """websockets' ServerConnection plus two things the protocol needs.

    - ``recv_message()`` returns ``(is_text, bytes)``: text is not decoded here, so text that is not
      UTF-8 reaches ``ServerProtocol.receive_text`` (``error`` ``not_utf8``, ``end``, then 1007)
      instead of websockets failing the connection with 1007 and no ``end``.
    - Past ``gate.limit`` connections in their opening handshake, a new one is answered 503 at once.
    """

    def __init__(self, *args, gate: HandshakeGate, **kwargs):
        super().__init__(*args, **kwargs)
        self._gate = gate
        self._in_handshake = False
        self._kinds: deque[bool] = deque()  # is_text of each data message received, in order

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._in_handshake = self._gate.enter()
        if not self._in_handshake:  # answered before the request is read (HTTP allows it)
            transport.write(self._gate.refusal())
            transport.close()

    async def handshake(self, *args, **kwargs) -> None:
        try:
            await super().handshake(*args, **kwargs)
        finally:
            self._leave_handshake()

    def connection_lost(self, exc) -> None:
        self._leave_handshake()
        super().connection_lost(exc)

    def _leave_handshake(self) -> None:
        if self._in_handshake:
            self._in_handshake = False
            self._gate.leave()

    def process_event(self, event) -> None:
        if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
            self._kinds.append(event.opcode is Opcode.TEXT)  # the first frame of each message
        super().process_event(event)

    async def recv_message(self) -> tuple[bool, bytes]:
        data = await self.recv(decode=False)
        return self._kinds.popleft(), data


class StreamServer:
    """One shared model served to many concurrent sessions.

    ``scheduler``: an object with the ``streamrt.scheduler.Scheduler`` API (start/add/wake/remove/
    stop); by default one is created for ``model`` and owned (started and stopped) by this server.
    ``port=0`` picks a free port (read ``server.port`` after ``start()``).
    """

    def __init__(
        self,
        model: StreamingModel,
        *,
        settings: ServerSettings = ServerSettings(),
        scheduler: "Scheduler | None" = None,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 8765,
    ):
        self.model = model
        self.settings = settings
        self.clock = clock or MonotonicClock()
        self._scheduler = scheduler
        self._owns_scheduler = scheduler is None
        self.host = host
        self.port = port
        self.stats = ServerStats()
        self._bridges: set[SessionBridge] = set()
        self._signalling = 0  # admitted WebRTC connections still negotiating (count toward max_sessions)
        self._server: Server | None = None
        self._ready = False
        self._draining = False
        self.handshakes = HandshakeGate(settings.max_handshakes)

    @property
    def scheduler(self):
        return self._scheduler

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # ---- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._scheduler is None:
            from streamrt.scheduler import Scheduler

            self._scheduler = Scheduler(self.model, clock=self.clock)
        if self._owns_scheduler:
            await self._scheduler.start()
        s = self.settings
        origins = None if s.allowed_origins is None else [*s.allowed_origins, None]  # None: non-browser clients
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=make_process_request(s.auth_token, self._health),
            origins=origins,
            max_size=s.hard_message_bytes,
            max_queue=s.receive_queue_frames,
            write_limit=(s.write_buffer_high_bytes, s.write_buffer_low_bytes),
            ping_interval=s.ping_interval_s,
            ping_timeout=s.ping_timeout_s,
            close_timeout=s.close_timeout_s,
            compression=None,  # PCM does not deflate; keep the CPU for the model
            create_connection=functools.partial(StreamConnection, gate=self.handshakes),
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready = True
        log.info("streamrt server listening on %s", self.url)

    async def stop(self) -> None:
        """Drain: let every live session commit and send ``end`` (close 1001), then stop listening.

        While draining the server keeps listening, so that ``/healthz`` answers 503 and new clients
        get ``shutting_down`` and 1001 (docs/protocol.md) rather than "connection refused"."""
        if self._server is None:
            return
        self._draining = True
        self._ready = False
        for bridge in list(self._bridges):
            bridge.shutdown()
        pending = [asyncio.create_task(b.wait_closed()) for b in self._bridges]
        if pending:
            done, not_done = await asyncio.wait(pending, timeout=self.settings.shutdown_timeout_s)
            for t in not_done:
                t.cancel()
        self._server.close(close_connections=True)  # stops listening, closes what is left
        await self._server.wait_closed()
        if self._owns_scheduler:
            await self._scheduler.stop()
        self._server = None

    async def __aenter__(self) -> "StreamServer":
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

    def _health(self) -> tuple[bool, dict]:
        status = "ok" if self._ready else ("draining" if self._draining else "starting")
        details = {
            "status": status,
            "sessions": len(self._bridges),
            "max_sessions": self.settings.max_sessions,
            "model": self.settings.model_name,
        }
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

    # ---- connections ---------------------------------------------------------------------------
    def admit(self) -> StreamrtError | None:
        """None if a new session may start now, else the error to send before closing."""
        if self._draining:
            return StreamrtError("server is shutting down; try another replica or later", code="shutting_down")
        limit = self.settings.max_sessions
        open_now = len(self._bridges) + self._signalling
        if limit is not None and open_now >= limit:
            self.stats.refused_busy += 1
            return StreamrtError(
                f"server busy: {open_now} sessions open, the limit is {limit} (setting max_sessions); "
                "try again later",
                code="server_busy",
            )
        if self.settings.refuse_when_saturated and self._scheduler is not None:
            reason = self._scheduler.saturation()
            if reason is not None:
                self.stats.refused_saturated += 1
                return StreamrtError(
                    f"server busy: {reason}; try again later (setting refuse_when_saturated)", code="server_busy"
                )
        return None

    def register(self, bridge: SessionBridge) -> None:
        self._bridges.add(bridge)
        self.stats.connections_active = len(self._bridges)

    def unregister(self, bridge: SessionBridge) -> None:
        self._bridges.discard(bridge)
        self.stats.connections_active = len(self._bridges)

    async def _handle(self, ws: ServerConnection) -> None:
        path = urlsplit(ws.request.path).path
        refusal = self.admit()
        if refusal is not None:
            code = CloseCode.TRY_AGAIN_LATER if refusal.code == "server_busy" else CloseCode.GOING_AWAY
            try:
                await ws.send(json.dumps(error_message(refusal.code, refusal.message, True)))
                await ws.close(code, refusal.code)
            except ConnectionClosed:
                pass
            return
        if path == "/v1/webrtc":
            from streamrt.server.webrtc import handle_webrtc_signalling

            self._signalling += 1  # holds its admission until the session registers (or gives up)
            held = [True]

            def release() -> None:
                if held[0]:
                    held[0] = False
                    self._signalling -= 1

            try:
                await handle_webrtc_signalling(self, ws, release)
            finally:
                release()
            return
        await self._handle_stream(ws)

    def new_protocol(self) -> ServerProtocol:
        return ServerProtocol(self.model, self.clock, self.settings)

    async def _handle_stream(self, ws: ServerConnection) -> None:
        proto = self.new_protocol()
        bridge = SessionBridge(proto, self._scheduler, self.settings, self.stats, ws.send, ws.close)
        self.register(bridge)
        bridge.start()
        try:
            await self._receive_loop(ws, proto, bridge)
        finally:
            if proto.state != "closed":  # the client vanished before end
                bridge.connection_lost()
            try:
                await asyncio.wait_for(bridge.wait_closed(), self.settings.close_timeout_s or 1.0)
            except TimeoutError:
                bridge.connection_lost()
            self.unregister(bridge)

    async def _receive_loop(self, ws: StreamConnection, proto: ServerProtocol, bridge: SessionBridge) -> None:
        idle = self.settings.idle_timeout_s
        start_s = self.settings.start_timeout_s
        loop = asyncio.get_running_loop()
        start_by = None if start_s is None else loop.time() + start_s  # not moved by other messages
        while True:
            timeout = idle
            if start_by is not None and proto.state == "await_start":
                left = max(0.0, start_by - loop.time())
                timeout = left if timeout is None else min(timeout, left)
            try:
                async with asyncio.timeout(timeout):
                    is_text, data = await ws.recv_message()
            except TimeoutError:
                if proto.state == "await_start" and start_by is not None and loop.time() >= start_by:
                    msg = f"no start message within {start_s:g} s of connecting (setting start_timeout_s)"
                    proto.fail(StreamrtError(msg, code="start_timeout"))
                    bridge.after_input()
                elif proto.state in ("await_start", "streaming"):
                    proto.fail(
                        StreamrtError(
                            f"no message from the client for {idle:g} s (setting idle_timeout_s)", code="idle_timeout"
                        )
                    )
                    bridge.after_input()
                continue
            except ConnectionClosed:
                return
            if is_text:
                proto.receive_text(data)  # bytes: the protocol checks UTF-8 (not_utf8, 1007)
            else:
                proto.receive_binary(data)
            bridge.after_input()
