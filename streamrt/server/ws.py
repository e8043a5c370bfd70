"""The WebSocket transport (websockets 17 asyncio API): sockets, clocks and tasks around the protocol.

    server = StreamServer(model, settings=ServerSettings(max_sessions=8), host="127.0.0.1", port=0)
    await server.start()            # starts the scheduler and listens; server.url is ws://host:port
    ...
    await server.stop()             # graceful: every live session commits, sends end, closes 1001

Endpoints: ``/v1/stream`` (protocol v1, docs/protocol.md), ``/v1/webrtc`` (WebRTC signalling, needs
aiortc), ``/v1/dialogue`` (the voice agent, when the server has one), ``GET /healthz``, ``GET /metrics``, ``GET /`` (browser page). One shared model; one ``Session`` per connection;
model steps run through the scheduler, which batches the steps of all sessions.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import deque
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from streamrt.engine import StreamingModel
from streamrt.server.http import make_process_request
from streamrt.server.hub import Dropped, HandshakeGate, ListeningHub
from streamrt.server.oversize import is_marker, parse_skipping_oversize
from streamrt.server.protocol import CloseCode, error_message

log = logging.getLogger("streamrt.server")


class StreamConnection(ServerConnection):
    """websockets' ServerConnection plus three things the protocol needs.

    - ``recv_message()`` returns ``(is_text, bytes)``: text is not decoded here, so text that is not
      UTF-8 reaches ``ServerProtocol.receive_text`` (``error`` ``not_utf8``, ``end``, then 1007)
      instead of websockets failing the connection with 1007 and no ``end``.
    - A message over ``max_size`` is skipped unread (``streamrt.server.oversize``) and comes out of
      ``recv_message()`` as ``Dropped(size)``, so the protocol answers it (``message_too_big``,
      ``end``, then 1009) instead of websockets closing 1009 with nothing said.
    - Past ``gate.limit`` connections in their opening handshake, a new one is answered 503 at once.
    """

    def __init__(self, *args, gate: HandshakeGate, **kwargs):
        super().__init__(*args, **kwargs)
        self._gate = gate
        self._in_handshake = False
        self._kinds: deque[list] = deque()  # [is_text, dropped size or None] of each data message, in order
        self._dropped: deque[int] = deque()  # sizes of the messages skipped, in order

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._in_handshake = self._gate.admit(transport)

    async def handshake(self, *args, **kwargs) -> None:
        try:
            await super().handshake(*args, **kwargs)
        finally:
            self._leave_handshake()
        p = self.protocol
        if p.state is State.OPEN and p.max_message_size is not None and not p.reader.buffer:
            p.parser = parse_skipping_oversize(p, self._dropped)  # the old one is idle between frames
            next(p.parser)

    def connection_lost(self, exc) -> None:
        self._leave_handshake()
        super().connection_lost(exc)

    def _leave_handshake(self) -> None:
        if self._in_handshake:
            self._in_handshake = False
            self._gate.leave()

    def process_event(self, event) -> None:
        if isinstance(event, Frame):
            if event.opcode in (Opcode.TEXT, Opcode.BINARY):  # the first frame of each message
                self._kinds.append([event.opcode is Opcode.TEXT, None])
            if is_marker(event):  # this message was dropped
                self._kinds[-1][1] = self._dropped.popleft()
        super().process_event(event)

    async def recv_message(self) -> tuple[bool, bytes] | Dropped:
        data = await self.recv(decode=False)
        is_text, dropped = self._kinds.popleft()
        return (is_text, data) if dropped is None else Dropped(dropped)


class StreamServer(ListeningHub):
    """One shared model served to many concurrent sessions over websockets (``ListeningHub``)."""

    def __init__(self, model: StreamingModel, **kwargs):
        super().__init__(model, **kwargs)
        self._server: Server | None = None

    # ---- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.start_sessions()
        s = self.settings
        origins = None if s.allowed_origins is None else [*s.allowed_origins, None]  # None: non-browser clients
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=make_process_request(s.auth_token, self.health, self.metrics_text, s.metrics_public),
            origins=origins,
            max_size=s.max_message_bytes,  # past it: skipped unread, answered message_too_big
            max_queue=s.receive_queue_frames,
            write_limit=(s.write_buffer_high_bytes, s.write_buffer_low_bytes),
            ping_interval=s.ping_interval_s,
            ping_timeout=s.ping_timeout_s,
            close_timeout=s.close_timeout_s,
            open_timeout=s.handshake_timeout_s,
            compression=None,  # PCM does not deflate; keep the CPU for the model
            create_connection=functools.partial(StreamConnection, gate=self.handshakes),
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("streamrt server listening on %s", self.url)

    async def stop(self) -> None:
        """Drain: let every live session commit and send ``end`` (close 1001), then stop listening.

        While draining the server keeps listening, so that ``/healthz`` answers 503 and new clients
        get ``shutting_down`` and 1001 (docs/protocol.md) rather than "connection refused"."""
        if self._server is None:
            return
        await self.drain()
        self._server.close(close_connections=True)  # stops listening, closes what is left
        await self._server.wait_closed()
        await self.stop_sessions()
        self._server = None

    # ---- connections ---------------------------------------------------------------------------
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

            release = self.hold_signalling()  # held until the session registers (or gives up)
            try:
                await handle_webrtc_signalling(self, ws, release)
            finally:
                release()
            return
        await self._handle_stream(ws)

    async def _handle_stream(self, ws: StreamConnection) -> None:
        async def recv() -> tuple[bool, bytes] | Dropped | None:
            try:
                return await ws.recv_message()
            except ConnectionClosed:
                return None

        if urlsplit(ws.request.path).path == "/v1/dialogue":
            await self.serve_dialogue(ws.send, ws.send, ws.close, recv)  # str: text, bytes: binary
            return
        await self.serve_session(ws.send, ws.close, recv)
