"""Every limit of the streaming server, as one frozen dataclass with units in the names.

``None`` disables a limit (as in websockets' ``serve()``). docs/protocol.md lists the same table;
keep them in step.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamrt.session import SessionLimits


@dataclass(frozen=True)
class ServerSettings:
    """Limits and switches of the server (``streamrt.server.asgi_server.AsgiServer``, ``.ws.StreamServer``).

    max_message_bytes: largest client message (text or binary) the protocol accepts; a larger one
        gets ``error`` ``message_too_big``, ``end`` and close 1009. Both built-in transports skip
        such a message unread (``streamrt.server.oversize``), so this holds whatever its size.
    max_sessions: concurrent WebSocket/WebRTC sessions; past it a new client gets ``error``
        ``server_busy`` and close 1013 (try again later).
    refuse_when_saturated: a new client also gets ``server_busy`` and 1013 while the scheduler
        reports itself saturated (``Scheduler.saturation``: no degradation rung left, and the model
        busy past ``saturation_busy_fraction`` or a stream past its latency budget), so that the
        sessions already open keep real time instead of all falling behind together.
    max_buffered_audio_s: seconds of audio received but not yet consumed by the model; a chunk that
        would pass it is dropped with ``error`` ``buffer_full`` (not fatal).
    max_stream_s: seconds of audio one session may send in total (fatal past it).
    idle_timeout_s: seconds without any client message after which the session is stopped (everything
        is committed and ``end`` sent), then closed with 1008 and ``error`` ``idle_timeout``.
    start_timeout_s: seconds from the end of the WebSocket handshake to a valid ``start``; other
        messages do not extend it. Past it: ``error`` ``start_timeout`` and close 1008, so that a
        connection that never starts cannot hold one of ``max_sessions``.
    max_handshakes: connections accepted whose opening (HTTP/WebSocket) handshake has not finished;
        past it a new connection is answered ``HTTP 503`` at once and closed.
    handshake_timeout_s: seconds a connection may take to send its first request (HTTP, or the
        WebSocket opening handshake); past it the connection is dropped.
    ping_interval_s / ping_timeout_s: WebSocket keepalive; a client that does not answer a ping within
        ping_timeout_s is closed with 1011 by the websockets layer.
    close_timeout_s: seconds to wait for the client's closing handshake before dropping the TCP link.
    send_queue_high_water: server messages queued for one client (not yet written to the socket).
        Superseded ``partial`` messages are dropped from the queue first (never commits); past this many
        the client is not reading: ``error`` ``slow_client`` and close 1008.
    write_buffer_high_bytes / write_buffer_low_bytes: the socket write buffer's high/low water marks
        (asyncio ``set_write_buffer_limits``); a send waits while the buffer is above the high mark.
    receive_queue_frames: frames websockets buffers from a client before it stops reading the socket.
    shutdown_timeout_s: on shutdown, seconds to wait for live sessions to commit and send ``end``.
    auth_token: when set, clients must send ``Authorization: Bearer <token>`` or ``?token=<token>``
        (HTTP 401 otherwise), on the WebSocket endpoints and on ``/metrics`` (unless metrics_public).
        ``/healthz`` and the static page stay open.
    metrics_public: serve ``GET /metrics`` without the bearer token even when auth_token is set (for
        a scraper inside a private network that sends no credentials).
    allowed_origins: when set, browsers whose ``Origin`` is not listed get HTTP 403.
    model_name: the name the shared model is served under; a ``start`` naming another model is refused.
    replica_id: which replica serves this session when the server runs as several (Ray Serve sets it,
        docs/scaling.md); sent as ``ready.replica`` and in ``/healthz``. None: one server, not sent.
    max_upload_bytes: largest request body of ``POST /v1/audio/transcriptions`` (the file with the
        multipart framing); past it: HTTP 413 ``file_too_large``. OpenAI's own limit is 25 MB.
    max_upload_s: longest audio an upload may hold, seconds; past it: HTTP 400 ``audio_too_long``.
    dialogue_tick_ms: how often a ``/v1/dialogue`` session is advanced between client messages (its
        paced agent audio comes out on these ticks), milliseconds.
    upload_ahead_s: seconds of an upload's audio fed ahead of the model (faster than real time, never
        past max_buffered_audio_s), so an upload shares the scheduler with live sessions.
    max_video_frame_pixels: largest video frame (width x height, pixels) a ``video`` message may
        carry, checked from the JPEG's header before decoding; past it the frame is dropped with
        ``error`` ``frame_too_big`` (not fatal). The bytes are bounded by max_message_bytes.
    """

    max_message_bytes: int | None = 1 << 20
    max_sessions: int | None = 64
    refuse_when_saturated: bool = True
    max_buffered_audio_s: float | None = 30.0
    max_stream_s: float | None = 4 * 3600.0
    idle_timeout_s: float | None = 60.0
    start_timeout_s: float | None = 10.0
    max_handshakes: int | None = 64
    handshake_timeout_s: float | None = 10.0
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    close_timeout_s: float | None = 5.0
    send_queue_high_water: int | None = 1024
    write_buffer_high_bytes: int = 64 * 1024
    write_buffer_low_bytes: int = 16 * 1024
    receive_queue_frames: int = 16
    shutdown_timeout_s: float | None = 30.0
    auth_token: str | None = None
    metrics_public: bool = False
    allowed_origins: tuple[str, ...] | None = None
    model_name: str | None = None
    replica_id: str | None = None
    max_upload_bytes: int | None = 25 * 1000 * 1000
    max_upload_s: float | None = 2 * 3600.0
    upload_ahead_s: float = 10.0
    dialogue_tick_ms: float = 20.0
    max_video_frame_pixels: int | None = 1280 * 720

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_sessions", "send_queue_high_water", "max_handshakes", "max_upload_bytes",
                     "max_video_frame_pixels"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {v}")
        if not self.dialogue_tick_ms > 0:
            raise ValueError(f"dialogue_tick_ms must be > 0 ms, got {self.dialogue_tick_ms}")
        if self.upload_ahead_s <= 0:
            raise ValueError(f"upload_ahead_s must be > 0, got {self.upload_ahead_s}")
        if self.write_buffer_low_bytes > self.write_buffer_high_bytes:
            raise ValueError(
                f"write_buffer_low_bytes ({self.write_buffer_low_bytes}) is above "
                f"write_buffer_high_bytes ({self.write_buffer_high_bytes})"
            )

    @property
    def session_limits(self) -> SessionLimits:
        return SessionLimits(max_buffered_audio_s=self.max_buffered_audio_s, max_stream_s=self.max_stream_s)

