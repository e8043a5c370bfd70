"""The server as one ASGI app (Starlette): every endpoint on one port.

    app = build_app(SessionHub(model, settings=ServerSettings(model_name="tiny.en")))
    # run it with streamrt.server.asgi_server.AsgiServer (uvicorn), or any ASGI server / Ray Serve

Endpoints:
- ``/v1/stream`` (WebSocket): protocol v1 (docs/protocol.md), through ``SessionHub.serve_session``:
  the same sans-I/O ``ServerProtocol`` and ``SessionBridge`` as the websockets transport.
- ``/v1/webrtc`` (WebSocket): WebRTC signalling (``streamrt.server.webrtc``).
- ``/v1/dialogue`` (WebSocket): the voice agent (``SessionHub.serve_dialogue``,
  ``streamrt.server.dialogue_protocol``), when the hub has one.
- ``POST /v1/audio/transcriptions``: OpenAI-compatible file transcription (``openai_api``).
- ``GET /healthz``, ``GET /metrics`` (Prometheus text), ``GET /`` and its files (the browser page).

The app's lifespan starts the hub's scheduler and, on shutdown, drains (every live session commits
and sends ``end``) before stopping it. ``AsgiServer`` drains before the listening socket closes, so
that ``/healthz`` answers 503 and new clients get ``shutting_down`` while draining.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from streamrt.server.http import WS_PATHS, auth_failure, bearer_token, static_asset
from streamrt.server.hub import Dropped, SessionHub
from streamrt.server.openai_api import error_response, transcriptions
from streamrt.server.protocol import CloseCode, error_message

# set by streamrt.server.asgi_server's WebSocket protocol on a text message that is not UTF-8, so that
# the protocol answers it (error not_utf8, every committed word, end, 1007) instead of the ASGI server
INVALID_TEXT_KEY = "streamrt.invalid_text"
DROPPED_KEY = "streamrt.dropped_bytes"  # likewise: a message over max_message_bytes, skipped unread
HTTP_PATHS = ("/v1/audio/transcriptions", "/healthz", "/metrics", "/")


def build_app(hub: SessionHub) -> Starlette:
    """The ASGI app serving ``hub``. Its lifespan starts and stops the hub's sessions."""
    s = hub.settings

    @asynccontextmanager
    async def lifespan(app):
        await hub.start_sessions()
        try:
            yield
        finally:
            if not hub.draining:  # an ASGI server that did not drain first (Ray Serve, plain uvicorn)
                await hub.drain()
            await hub.stop_sessions()

    async def websocket_endpoint(ws: WebSocket) -> None:
        denial = _denial(ws, s.auth_token, s.allowed_origins)
        if denial is not None:
            await ws.send_denial_response(denial)
            return
        await ws.accept()
        refusal = hub.admit()
        if refusal is not None:
            code = CloseCode.TRY_AGAIN_LATER if refusal.code == "server_busy" else CloseCode.GOING_AWAY
            link = AsgiLink(ws)
            await link.send(json.dumps(error_message(refusal.code, refusal.message, True)))
            await link.close(code, refusal.code)
            return
        if ws.url.path == "/v1/webrtc":
            from streamrt.server.webrtc import handle_webrtc_signalling

            release = hub.hold_signalling()  # held until the session registers (or gives up)
            try:
                await handle_webrtc_signalling(hub, SignallingSocket(ws), release)
            finally:
                release()
            return
        link = AsgiLink(ws)
        if ws.url.path == "/v1/dialogue":
            await hub.serve_dialogue(link.send, link.send_bytes, link.close, link.recv)
            return
        await hub.serve_session(link.send, link.close, link.recv)

    async def healthz(request: Request) -> Response:
        ready, details = hub.health()
        return JSONResponse(details, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})

    def unauthorized(request: Request) -> str | None:
        return auth_failure(s.auth_token, bearer_token(request.headers.get("authorization", ""), request.url.query))

    async def metrics(request: Request) -> Response:
        why = None if s.metrics_public else unauthorized(request)
        if why is not None:
            return PlainTextResponse(f"{why}: send 'Authorization: Bearer <token>' or '?token=<token>'\n",
                                     status_code=401, headers={"WWW-Authenticate": 'Bearer realm="streamrt"'})
        body, content_type = hub.metrics_text()
        return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    async def audio_transcriptions(request: Request) -> Response:
        why = unauthorized(request)
        if why is not None:
            return error_response(401, f"{why}: send 'Authorization: Bearer <token>' (the client's api_key)",
                                  "invalid_api_key")
        return await transcriptions(request, hub)

    async def static(request: Request) -> Response:
        path = request.url.path
        found = static_asset("index.html" if path == "/" else path.lstrip("/"))
        if found is None:
            return PlainTextResponse(
                f"no such path {path!r}; WebSocket endpoints: {', '.join(WS_PATHS)}; HTTP: {', '.join(HTTP_PATHS)}\n",
                status_code=404,
            )
        body, content_type = found
        return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})

    routes = [
        *(WebSocketRoute(p, websocket_endpoint) for p in WS_PATHS),
        Route("/v1/audio/transcriptions", audio_transcriptions, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/{name:path}", static),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _denial(ws: WebSocket, auth_token: str | None, origins: tuple[str, ...] | None) -> Response | None:
    """The HTTP answer refusing a WebSocket handshake (401 bad token, 403 origin), or None."""
    why = auth_failure(auth_token, bearer_token(ws.headers.get("authorization", ""), ws.url.query))
    if why is not None:
        return PlainTextResponse(
            f"{why}: send 'Authorization: Bearer <token>' or '?token=<token>'\n",
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="streamrt"'},
        )
    origin = ws.headers.get("origin")
    if origins is not None and origin is not None and origin not in origins:
        return PlainTextResponse(f"origin {origin!r} is not allowed (setting allowed_origins)\n", status_code=403)
    return None


class AsgiLink:
    """send/close/recv of ``SessionHub.serve_session`` over an accepted ASGI WebSocket."""

    def __init__(self, ws: WebSocket):
        self.ws = ws

    async def send(self, text: str) -> None:
        await self.ws.send({"type": "websocket.send", "text": text})  # raises once the client is gone

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send({"type": "websocket.send", "bytes": data})

    async def close(self, code: int, reason: str) -> None:
        if self.ws.application_state == WebSocketState.DISCONNECTED:
            return
        try:
            await self.ws.close(code, reason)
        except (WebSocketDisconnect, RuntimeError, OSError):  # the client went first
            pass

    async def recv(self) -> tuple[bool, Any] | Dropped | None:
        if self.ws.client_state == WebSocketState.DISCONNECTED:
            return None
        try:
            msg = await self.ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None
        if msg["type"] == "websocket.disconnect":
            return None
        if msg.get("text") is not None:
            return True, msg["text"]
        if msg.get(DROPPED_KEY) is not None:
            return Dropped(msg[DROPPED_KEY])
        if msg.get(INVALID_TEXT_KEY) is not None:
            return True, msg[INVALID_TEXT_KEY]  # raw bytes: the protocol answers not_utf8
        return False, msg.get("bytes") or b""


class SignallingSocket:
    """The websockets-style ``recv``/``send``/``close`` that ``streamrt.server.webrtc`` signals over,
    on an ASGI WebSocket; a gone client raises websockets' ``ConnectionClosed`` as there."""

    def __init__(self, ws: WebSocket):
        self.link = AsgiLink(ws)

    async def recv(self) -> str | bytes:
        from websockets.exceptions import ConnectionClosed

        got = await self.link.recv()
        if got is None:
            raise ConnectionClosed(None, None)
        if isinstance(got, Dropped):
            return b""  # over max_message_bytes: not an offer (bad_message)
        is_text, data = got
        return data.decode("utf-8", "replace") if is_text and isinstance(data, bytes) else data

    async def send(self, text: str) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self.link.send(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            raise ConnectionClosed(None, None) from None

    async def close(self, code: int, reason: str) -> None:
        await self.link.close(code, reason)
