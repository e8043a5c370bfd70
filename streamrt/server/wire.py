"""What both WebSocket protocols (captions, ``streamrt.server.protocol``; dialogue,
``streamrt.server.dialogue_protocol``) share on the wire: close codes, the ``error`` message,
parsing a client's JSON text so that every way it fails is a ``ProtocolError``, and ``WireProtocol``,
the connection machinery around them (size check, fatal errors, close, outbox, camera frames)."""

from __future__ import annotations

import json
import sys
from enum import IntEnum
from typing import Any

from streamrt.errors import LimitExceeded, ProtocolError, StreamrtError
from streamrt.server.video import VideoIntake
from streamrt.types import VideoFrame


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


class WireProtocol:
    """The connection machinery both sans-I/O protocols share: the message-size check, reading a
    client text message, fatal errors (stop, flush, then close), the close reason and the outbox.

    A protocol sets ``state``, ``close``, ``session``, ``settings``, ``_outbox``, ``_pending_close``
    and ``_video_in`` (a ``VideoIntake``) in its ``__init__``, names its live state in ``LIVE_STATE``
    (the state in which a fatal error stops the session first) and implements ``_advance()`` (turn
    the session's new events into messages), ``video_on`` (the session takes camera frames: it was
    started with ``"video": true``) and ``media_ms`` (the audio's media clock: ms of audio received).
    Its session takes frames with ``receive_video(VideoFrame)``."""

    LIVE_STATE = "streaming"
    state: str
    close: tuple[int, str] | None
    session: Any
    settings: Any
    _outbox: list
    _pending_close: tuple[int, str] | None
    _video_in: VideoIntake

    def _advance(self) -> None:
        raise NotImplementedError

    @property
    def video_on(self) -> bool:
        raise NotImplementedError

    @property
    def media_ms(self) -> float:
        raise NotImplementedError

    # ---- camera frames (docs/video.md) ---------------------------------------------------------
    def receive_video(self, frame: VideoFrame) -> None:
        """A decoded camera frame, ``time_ms`` on the audio's media clock (the WebRTC transport
        calls this; ``video`` messages come here decoded). Dropped with a non-fatal ``video_off``
        when the session was not started with ``"video": true``."""
        if not self._video_refused():
            self.session.receive_video(frame)
            self._advance()

    def _video_message(self, msg: dict) -> None:
        if self._video_refused():  # before decoding anything
            return
        try:
            frame = self._video_in.frame(msg)
        except StreamrtError as e:
            self._send(error_message(e.code, e.message, False))
            return
        self.session.receive_video(frame)
        self._advance()

    def _video_refused(self) -> bool:
        if self.state == "closed":
            return True
        if self.session is None:
            self._fail(ProtocolError("video before start: send a start message first", code="not_started", fatal=True))
            return True
        if not self.video_on:
            self._send(error_message("video_off", 'a video frame, but the session was not started with "video": true '
                                     "(frame dropped)", False))
            return True
        return False

    def receive_too_big(self, size: int) -> None:
        """A message of at least ``size`` bytes, over ``max_message_bytes``, that the transport dropped
        unread: answered ``message_too_big`` as if it had been received."""
        if self.state != "closed":
            self._too_big(size)

    def fail(self, error: StreamrtError) -> None:
        """An error the transport found (idle timeout, ...). Fatal: stop, commit, end, then close."""
        if self.state != "closed":
            self._fail(error)

    def data_to_send(self) -> list:
        out, self._outbox = self._outbox, []
        return out

    def _read_message(self, text: str | bytes) -> dict | None:
        """A client text message as a JSON object with a string ``type``; None (after failing the
        connection, or when it is closed) otherwise."""
        if self.state == "closed":
            return None
        size = len(text) if isinstance(text, (bytes, bytearray)) else len(text.encode("utf-8", "surrogatepass"))
        if self._too_big(size):
            return None
        try:
            msg = parse_json(text)
        except ProtocolError as e:
            self._fail(e)
            return None
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            self._fail(ProtocolError('a text message must be a JSON object with a string "type"', code="bad_message",
                                     fatal=True))
            return None
        return msg

    def _too_big(self, size: int) -> bool:
        limit = self.settings.max_message_bytes
        if limit is not None and size > limit:
            self._fail(LimitExceeded("max_message_bytes", limit, size, "bytes", what="message size",
                                     code="message_too_big", fatal=True))
            return True
        return False

    def _fail(self, e: StreamrtError) -> None:
        self._send(error_message(e.code, e.message, e.fatal))
        if not e.fatal:
            return
        if self.session is None:
            self._close(close_code_for(e.code), e.message)
            return
        self._pending_close = self._pending_close or (close_code_for(e.code), e.message)
        if self.state == self.LIVE_STATE:
            self.state = "stopping"
            self.session.receive_eof()
        self._advance()

    def _close(self, code: int, reason: str) -> None:
        self.state = "closed"
        # a close reason is at most 123 bytes of UTF-8 (RFC 6455 section 5.5.1); lone surrogates
        # from a client's JSON cannot be encoded and become "?"
        self.close = (int(code), reason.encode("utf-8", "replace")[:120].decode("utf-8", "ignore"))

    def _send(self, msg: dict | bytes) -> None:
        if self.state != "closed":
            self._outbox.append(msg)
