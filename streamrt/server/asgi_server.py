"""The ASGI app (``streamrt.server.asgi``) served by uvicorn in this process, on one port.

    server = AsgiServer(model, settings=ServerSettings(max_sessions=8), host="127.0.0.1", port=0)
    await server.start()        # starts the scheduler and listens; server.url is ws://host:port
    ...
    await server.stop()         # drains while still listening, then stops listening

Two uvicorn protocol classes carry what the websockets transport does itself:
- ``GatedH11Protocol``: connections whose first request (HTTP, or the WebSocket opening handshake)
  has not arrived count toward ``max_handshakes`` (past it: 503 at once) and are dropped after
  ``handshake_timeout_s``;
- ``StreamWebSocketProtocol``: a text message that is not UTF-8, or a message over
  ``max_message_bytes`` (skipped unread, ``streamrt.server.oversize``), reaches the protocol (which
  answers ``not_utf8`` / ``message_too_big``, commits, sends ``end``, closes 1007 / 1009) instead of
  uvicorn closing with nothing said; the socket's write buffer marks and the closing-handshake
  timeout come from the settings.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections import deque

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from streamrt.engine import StreamingModel
from streamrt.server.asgi import DROPPED_KEY, INVALID_TEXT_KEY, build_app
from streamrt.server.hub import HandshakeGate, ListeningHub
from streamrt.server.oversize import is_marker, parse_skipping_oversize
from streamrt.server.settings import ServerSettings

log = logging.getLogger("streamrt.server")


class GatedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a bound on connections still sending their first request."""

    def __init__(self, *args, gate: HandshakeGate, timeout_s: float | None, **kwargs):
        super().__init__(*args, **kwargs)
        self._gate = gate
        self._timeout_s = timeout_s
        self._in_handshake = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._in_handshake = self._gate.admit(transport)
        if self._in_handshake and self._timeout_s is not None:
            self._timer = self.loop.call_later(self._timeout_s, self._handshake_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.scope is not None:  # the first request's head arrived (an upgrade left earlier)
            self._leave()

    def handle_websocket_upgrade(self, event) -> None:
        self._leave()
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc) -> None:
        self._leave()
        super().connection_lost(exc)

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self._in_handshake:
            self._leave()
            self.transport.close()

    def _leave(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._in_handshake:
            self._in_handshake = False
            self._gate.leave()


class StreamWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol with what the protocol needs of a transport (see the module
    docstring): invalid UTF-8 text reaches the app (``INVALID_TEXT_KEY``), and a message over
    ``max_message_bytes`` is skipped unread (``streamrt.server.oversize``) and reaches the app as its
    size (``DROPPED_KEY``), so that the protocol answers both."""

    def __init__(self, *args, settings: ServerSettings, **kwargs):
        super().__init__(*args, **kwargs)
        self._settings = settings
        self._dropped: deque[int] = deque()  # sizes of the messages skipped, in order
        if settings.close_timeout_s is not None:
            self.close_timeout = settings.close_timeout_s

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        s = self._settings
        transport.set_write_buffer_limits(high=s.write_buffer_high_bytes, low=s.write_buffer_low_bytes)

    async def send(self, message) -> None:
        await super().send(message)
        p = self.conn
        if message["type"] == "websocket.accept" and p.state is State.OPEN and p.max_message_size is not None \
                and not p.reader.buffer:  # the handshake parser is idle between frames: swap it
            p.parser = parse_skipping_oversize(p, self._dropped)
            next(p.parser)

    def handle_text(self, event) -> None:
        self._data_frame(event, super().handle_text)

    def handle_bytes(self, event) -> None:
        self._data_frame(event, super().handle_bytes)

    def handle_cont(self, event) -> None:
        self._data_frame(event, super().handle_cont)

    def _data_frame(self, event, handle) -> None:
        if is_marker(event):  # the rest of this message was dropped unread
            self.frames = []
            self._to_app({"type": "websocket.receive", "text": None, "bytes": None, DROPPED_KEY: self._dropped.popleft()})
        else:
            handle(event)

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            try:
                data.decode()
            except UnicodeDecodeError:
                self.frames = []
                self._to_app({"type": "websocket.receive", "text": None, "bytes": None, INVALID_TEXT_KEY: data})
                return
        super().send_receive_event_to_app()

    def _to_app(self, message: dict) -> None:
        """Queue one message for the app and stop reading until it is taken (as uvicorn does)."""
        if self.close_sent:
            return
        self.queue.put_nowait(message)
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: ``AsgiServer.stop`` (or the CLI's handler) drains first."""

    def capture_signals(self):
        import contextlib

        return contextlib.nullcontext()


class AsgiServer(ListeningHub):
    """One shared model served over one port: WebSocket protocol, HTTP API, /healthz, /metrics, page
    (``ListeningHub``)."""

    def __init__(self, model: StreamingModel, **kwargs):
        super().__init__(model, **kwargs)
        self.app = build_app(self)
        self._uvicorn: _Uvicorn | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Listen (OSError if the address is taken), start the scheduler, serve."""
        s = self.settings
        sock = socket.create_server((self.host, self.port), reuse_port=False)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            http=functools.partial(GatedH11Protocol, gate=self.handshakes, timeout_s=s.handshake_timeout_s),
            ws=functools.partial(StreamWebSocketProtocol, settings=s),
            ws_max_size=s.max_message_bytes,  # past it: skipped unread, answered message_too_big
            ws_ping_interval=s.ping_interval_s,
            ws_ping_timeout=s.ping_timeout_s,
            ws_per_message_deflate=False,  # PCM does not deflate; keep the CPU for the model
            lifespan="on",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=s.close_timeout_s,
        )
        self._uvicorn = _Uvicorn(config)
        self._task = asyncio.create_task(self._uvicorn.serve(sockets=[sock]))
        while not self._uvicorn.started:
            if self._task.done():  # startup failed (the lifespan raised)
                sock.close()
                await self._task
                raise RuntimeError("the ASGI server stopped while starting")
            await asyncio.sleep(0.01)
        self._sock = sock
        log.info("streamrt server listening on %s", self.url)

    async def stop(self) -> None:
        """Drain (sessions commit and send ``end``, 1001) while listening, then stop listening."""
        if self._task is None:
            return
        await self.drain()
        self._uvicorn.should_exit = True  # uvicorn closes the socket, then runs the lifespan's end
        await self._task
        self._sock.close()
        self._task = None
