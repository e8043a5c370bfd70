"""The plain-HTTP side of the server, as a websockets ``process_request`` hook.

``GET /healthz`` (200 when ready, 503 while starting or draining), ``GET /metrics`` (Prometheus text;
behind the bearer token when the server has one, unless ``metrics_public``), ``GET /`` and
``GET /<file>`` (the browser page from streamrt/server/static/), the bearer-token check for the
WebSocket endpoints, and 404 for everything else. websockets speaks only GET, so WebRTC signalling goes over a WebSocket.
"""

from __future__ import annotations

import hmac
import json
from http import HTTPStatus
from importlib import resources
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

WS_PATHS = ("/v1/stream", "/v1/webrtc", "/v1/dialogue")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
}


def response(status: HTTPStatus, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> Response:
    headers = Headers(
        {"Content-Type": content_type, "Content-Length": str(len(body)), "Cache-Control": "no-store", **(extra or {})}
    )
    return Response(status.value, status.phrase, headers, body)


def json_response(status: HTTPStatus, obj: dict) -> Response:
    return response(status, json.dumps(obj).encode(), "application/json")


def static_asset(name: str) -> tuple[bytes, str] | None:
    """(body, content type) of a file from the packaged static folder, or None. Only plain names in
    that folder are served (no path traversal)."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    suffix = name[name.rfind(".") :] if "." in name else ""
    if suffix not in CONTENT_TYPES:
        return None
    path = resources.files("streamrt.server").joinpath("static", name)
    if not path.is_file():
        return None
    return path.read_bytes(), CONTENT_TYPES[suffix]


def static_file(name: str) -> Response | None:
    found = static_asset(name)
    return None if found is None else response(HTTPStatus.OK, *found)


def bearer_token(authorization: str, query: str) -> str | None:
    """The bearer token from an ``Authorization: Bearer ...`` header value or a ``token`` query parameter."""
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    values = parse_qs(query).get("token")
    return values[0] if values else None


def auth_failure(auth_token: str | None, given: str | None) -> str | None:
    """None when ``given`` passes (or no token is required), else why not (compared in constant time)."""
    if auth_token is None:
        return None
    if given is None:
        return "missing bearer token"
    if not hmac.compare_digest(given.encode(), auth_token.encode()):
        return "wrong bearer token"
    return None


def token_of(request: Request) -> str | None:
    """The bearer token from ``Authorization: Bearer ...`` or the ``token`` query parameter."""
    return bearer_token(request.headers.get("Authorization", ""), urlsplit(request.path).query)


def unauthorized(auth_token: str | None, request: Request) -> Response | None:
    """None when the request may go on (no token set, or the right one given), else the 401."""
    why = auth_failure(auth_token, token_of(request))
    if why is None:
        return None
    return response(
        HTTPStatus.UNAUTHORIZED,
        f"{why}: send 'Authorization: Bearer <token>' or '?token=<token>'\n".encode(),
        "text/plain; charset=utf-8",
        {"WWW-Authenticate": 'Bearer realm="streamrt"'},
    )


def make_process_request(
    auth_token: str | None,
    health: Callable[[], tuple[bool, dict]],
    metrics: Callable[[], tuple[bytes, str]],
    metrics_public: bool = False,
) -> Callable[[object, Request], Response | None]:
    """Build the hook. ``health()`` returns (ready, details) for /healthz; ``metrics()`` returns
    (body, content type) for /metrics."""

    def process_request(connection: object, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path in WS_PATHS:
            return unauthorized(auth_token, request)  # None: go on with the WebSocket handshake
        if path == "/metrics":
            refused = None if metrics_public else unauthorized(auth_token, request)
            return refused or response(HTTPStatus.OK, *metrics())
        if path == "/healthz":
            ready, details = health()
            return json_response(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE, details)
        found = static_file("index.html" if path == "/" else path.lstrip("/"))
        if found is not None:
            return found
        return response(
            HTTPStatus.NOT_FOUND,
            f"no such path {path!r}; WebSocket endpoints: {', '.join(WS_PATHS)}; also /, /healthz and /metrics\n".encode(),
            "text/plain; charset=utf-8",
        )

    return process_request
