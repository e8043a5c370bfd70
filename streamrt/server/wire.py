"""What both WebSocket protocols (captions, ``streamrt.server.protocol``; dialogue,
``streamrt.server.dialogue_protocol``) share on the wire: close codes, the ``error`` message, and
parsing a client's JSON text so that every way it fails is a ``ProtocolError``."""

from __future__ import annotations

import json
import sys
from enum import IntEnum
from typing import Any

from streamrt.errors import ProtocolError


class CloseCode(IntEnum):
    """WebSocket close codes used by the server (RFC 6455 section 7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutdown
    INVALID_DATA = 1007  # a text message that is not UTF-8 or not JSON
    POLICY_VIOLATION = 1008  # protocol misuse, refused start, idle, slow client
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013  # server busy


_CLOSE_FOR_CODE = {
    "not_json": CloseCode.INVALID_DATA,
    "not_utf8": CloseCode.INVALID_DATA,
    "message_too_big": CloseCode.MESSAGE_TOO_BIG,
    "server_busy": CloseCode.TRY_AGAIN_LATER,
    "internal_error": CloseCode.INTERNAL_ERROR,
    "model_error": CloseCode.INTERNAL_ERROR,
    "shutting_down": CloseCode.GOING_AWAY,
}


def close_code_for(error_code: str) -> CloseCode:
    """The close code that follows a fatal error with this wire code."""
    return _CLOSE_FOR_CODE.get(error_code, CloseCode.POLICY_VIOLATION)


def error_message(code: str, message: str, fatal: bool) -> dict:
    return {"type": "error", "code": code, "message": message, "fatal": fatal}


def show(value: Any, limit: int = 60) -> str:
    """A client's value for an error message: ``repr`` (lone surrogates come out escaped), cut to
    ``limit`` characters so that a megabyte of input is never echoed back."""
    try:
        text = repr(value)
    except RecursionError:  # pragma: no cover - parse_json bounds nesting first
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_json(data: str | bytes) -> Any:
    """Parse one client text message; every way it can fail becomes a fatal ``ProtocolError``.

    ``bytes`` must be UTF-8 (``not_utf8``, RFC 6455 section 8.1). Python's own limits are client
    errors too: an integer over ``sys.get_int_max_str_digits()`` digits (``json_number_too_long``;
    json raises a bare ValueError) and nesting past the recursion limit (``json_too_deep``)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(
                f"text message is not UTF-8 ({e.reason} at byte {e.start})", code="not_utf8", fatal=True
            ) from None
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"text message is not JSON ({e.msg} at char {e.pos})", code="not_json", fatal=True) from None
    except RecursionError:
        raise ProtocolError(
            "text message nests arrays/objects too deeply to parse (limit about "
            f"{sys.getrecursionlimit()} levels; protocol messages nest at most 3)",
            code="json_too_deep",
            fatal=True,
        ) from None
    except ValueError as e:  # int() past sys.get_int_max_str_digits()
        raise ProtocolError(
            f"text message has an integer over {sys.get_int_max_str_digits()} digits, Python's limit ({e})"[:200],
            code="json_number_too_long",
            fatal=True,
        ) from None
