"""Protocol v1, sans-I/O: client messages in, ``Session`` calls made, server messages out.

One ``ServerProtocol`` per connection. The transport (``streamrt.server.ws`` or ``.webrtc``) must:

1. feed every client message to ``receive_text`` / ``receive_binary`` (never anything else);
2. when ``session`` becomes non-None, hand it to the scheduler; after every ``receive_*``, ``stop``,
   ``fail`` or ``shutdown`` call ``scheduler.wake(session)`` (audio or end of stream arrived);
3. after each model step that touched the session, call ``collect()``;
4. send everything ``data_to_send()`` returns (dicts, to be JSON-encoded), in order;
5. once ``close`` is not None, send what is left and close with ``close == (code, reason)``.

Nothing here raises to the transport: every problem becomes an ``error`` message. Fatal errors
after ``start`` stop the session first, so every committed word still reaches the client before
``end``; fatal errors before ``start`` close at once. docs/protocol.md is the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from streamrt.audio import check_format
from streamrt.clock import Clock
from streamrt.engine import Describable, StreamingModel
from streamrt.errors import AudioFormatError, ConfigError, ProtocolError, StreamrtError
from streamrt.server.settings import ServerSettings
from streamrt.server.video import VideoIntake
# the wire helpers, re-exported: transports and the dialogue protocol import them from here
from streamrt.server.wire import CloseCode, close_code_for, error_message, parse_json, show  # noqa: F401
from streamrt.server.wire import WireProtocol
from streamrt.session import Session
from streamrt.stream_session import StepOutput, StreamSession
from streamrt.types import CommitEvent, EndEvent, ErrorEvent, Event, PartialEvent

PROTOCOL_VERSION = 1
CLIENT_TYPES = ("start", "stop", "video")
START_FIELDS = ("type", "sample_rate", "encoding", "channels", "task", "model", "policy", "policy_options", "language",
                "background", "video")
MODEL_OPTIONS = ("task", "policy", "policy_options", "language")
# fatal session errors after which the model stream cannot flush: end with what is committed
UNRECOVERABLE = ("model_error", "internal_error")


@dataclass(frozen=True)
class StartRequest:
    """A validated ``start`` message."""

    sample_rate: int
    encoding: str
    channels: int = 1
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # task / policy / policy_options / language
    background: bool = False  # batch work: stepped in real-time sessions' slack (Scheduler.add)
    video: bool = False  # the client sends camera frames: lip activity is scored and sent back


def parse_start(msg: Mapping[str, Any], *, model_name: str | None = None) -> StartRequest:
    """Validate a ``start`` message; raises ProtocolError / AudioFormatError / ConfigError (all fatal)."""
    unknown = sorted(set(msg) - set(START_FIELDS))
    if unknown:
        raise ProtocolError(
            f"start: unknown field(s) {', '.join(show(k, 40) for k in unknown[:5])}; allowed: {', '.join(START_FIELDS)}",
            code="bad_start",
            fatal=True,
        )
    for name in ("sample_rate", "encoding"):
        if name not in msg:
            raise ProtocolError(f"start: missing required field {name!r}", code="bad_start", fatal=True)
    # types first: check_format and the model compare and hash these values
    for name in ("encoding", "task", "model", "language", "policy"):
        if (name == "encoding" or msg.get(name) is not None) and not isinstance(msg[name], str):
            raise ProtocolError(f"start: {name!r} must be a string, got {show(msg[name])}", code="bad_start", fatal=True)
    for name in ("sample_rate", "channels"):
        v = msg.get(name, 1)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise AudioFormatError(f"start: {name!r} must be an integer, got {show(v)}", code=f"unsupported_{name}", fatal=True)
    if msg.get("policy_options") is not None and not isinstance(msg["policy_options"], dict):
        raise ProtocolError(
            f"start: 'policy_options' must be an object, got {show(msg['policy_options'])}", code="bad_start", fatal=True
        )
    encoding, sample_rate, channels = msg["encoding"], msg["sample_rate"], msg.get("channels", 1)
    check_format(encoding, sample_rate, channels)  # AudioFormatError, fatal, names the supported range
    model = msg.get("model")
    if model is not None and model_name is not None and model != model_name:
        raise ConfigError(f"start: model {show(model)} is not served here; this server serves {model_name!r}", code="unknown_model")
    background = msg.get("background", False)
    if not isinstance(background, bool):
        raise ProtocolError(f"start: 'background' must be true or false, got {show(background)}", code="bad_start",
                            fatal=True)
    video = msg.get("video", False)
    if not isinstance(video, bool):
        raise ProtocolError(f"start: 'video' must be true or false, got {show(video)}", code="bad_start", fatal=True)
    options = {k: msg[k] for k in MODEL_OPTIONS if msg.get(k) is not None}
    return StartRequest(sample_rate, encoding, channels, model, options, background, video)


class ServerProtocol(WireProtocol):
    """The protocol state of one client connection: ``await_start`` -> ``streaming`` -> ``stopping``
    -> ``closed``. See the module docstring for what the transport must do."""

    def __init__(
        self,
        model: StreamingModel,
        clock: Clock,
        settings: ServerSettings = ServerSettings(),
        *,
        session_id: str | None = None,
        video_model: StreamingModel | None = None,
    ):
        self.model = model
        self.video_model = video_model  # scores the frames of sessions started with "video": true
        self.clock = clock
        self.settings = settings
        self.session_id = session_id
        self.session: Session | None = None
        self.start_request: StartRequest | None = None
        self.state = "await_start"
        self.close: tuple[int, str] | None = None
        self._outbox: list[dict] = []
        self._pending_close: tuple[int, str] | None = None
        self._video_in = VideoIntake(settings.max_video_frame_pixels)

    # ---- client input ------------------------------------------------------------------------
    def receive_text(self, text: str | bytes) -> None:
        """A text message: ``str``, or its raw ``bytes`` (checked here to be UTF-8)."""
        msg = self._read_message(text)
        if msg is None:
            return
        kind = msg["type"]
        if kind == "start":
            self.start(msg)
        elif kind == "stop":
            self.stop()
        elif kind == "video":
            self._video_message(msg)
        else:
            self._send(error_message("unknown_type", f"unknown message type {show(kind)}; known: {', '.join(CLIENT_TYPES)} (ignored)", False))

    def receive_binary(self, data: bytes) -> None:
        if self.state == "closed" or self._too_big(len(data)):
            return
        if self.session is None:
            self._fail(ProtocolError("binary audio before start: send a start message first", code="not_started", fatal=True))
            return
        self.session.receive_pcm(bytes(data), self.start_request.encoding)
        self.collect()

    @property
    def video_on(self) -> bool:
        return self.session is not None and self.session.video is not None

    @property
    def media_ms(self) -> float:
        return 0.0 if self.session is None else self.session.received_ms

    def start(self, msg: Mapping[str, Any]) -> None:
        """Handle a ``start`` message (already parsed; the WebRTC transport calls this directly)."""
        if self.state != "await_start":
            self._send(error_message("already_started", "start sent twice; the session already started (ignored)", False))
            return
        try:
            req = parse_start(msg, model_name=self.settings.model_name)
            if req.video and self.video_model is None:
                raise ConfigError('start: "video": true, but this server scores no video (serve with --video, which '
                                  "needs the `video` extra)", code="video_unavailable")
            stream = self.model.create_stream(req.options)
            video_stream = self.video_model.create_stream() if req.video else None
        except StreamrtError as e:
            self._fail(e if e.fatal else type(e)(e.message, code=e.code, fatal=True))
            return
        except Exception as e:  # a model bug must not take the server down
            self._fail(StreamrtError(f"could not create a stream: {type(e).__name__}: {e}", fatal=True))
            return
        self.start_request = req
        self.session = Session(
            stream,
            self.clock,
            model_sample_rate=self.model.sample_rate,
            input_sample_rate=req.sample_rate,
            input_channels=req.channels,
            limits=self.settings.session_limits,
            session_id=self.session_id,
        )
        self.session_id = self.session.id
        if video_stream is not None:
            self.session.video = StreamSession(video_stream, self.clock, session_id=f"{self.session.id}-video")
        self.state = "streaming"
        self._send(
            {
                "type": "ready",
                "protocol": PROTOCOL_VERSION,
                "session_id": self.session.id,
                "model": self.settings.model_name,
                "sample_rate": req.sample_rate,
                "encoding": req.encoding,
                "channels": req.channels,
                "model_sample_rate": self.model.sample_rate,
                "options": req.options,
                "background": req.background,
                "video": req.video,
                "settings": self.model.describe() if isinstance(self.model, Describable) else {},
                "limits": {
                    "max_message_bytes": self.settings.max_message_bytes,
                    "max_buffered_audio_s": self.settings.max_buffered_audio_s,
                    "max_stream_s": self.settings.max_stream_s,
                    "idle_timeout_s": self.settings.idle_timeout_s,
                    "max_video_frame_pixels": self.settings.max_video_frame_pixels,
                },
                **({} if self.settings.replica_id is None else {"replica": self.settings.replica_id}),
            }
        )

    def stop(self) -> None:
        """Handle ``stop``: end of audio; ``end`` follows once everything is committed."""
        if self.state == "await_start":
            self._fail(ProtocolError("stop before start", code="not_started", fatal=True))
        elif self.state == "streaming":
            self.state = "stopping"
            self.session.receive_eof()
            self.collect()
        elif self.state == "stopping":
            self._send(error_message("already_stopped", "stop sent twice (ignored)", False))

    # ---- transport-side events ---------------------------------------------------------------
    def shutdown(self) -> None:
        """The server is going away: commit everything, send ``end``, close with 1001."""
        if self.state in ("await_start", "streaming", "stopping"):
            msg = "server is shutting down; the session ends after committing what was received"
            self._fail(StreamrtError(msg, code="shutting_down", fatal=True))

    def abort(self, error: StreamrtError) -> None:
        """Close now without waiting for ``end`` (the client cannot receive anything anyway)."""
        if self.state == "closed":
            return
        self._send(error_message(error.code, error.message, True))
        self._close(close_code_for(error.code), error.message)

    def connection_lost(self) -> None:
        """The client went away; nothing more will be sent."""
        self.state = "closed"
        if self.close is None:
            self.close = (CloseCode.GOING_AWAY, "connection lost")

    # ---- output ------------------------------------------------------------------------------
    def collect(self) -> None:
        """Turn the session's new events into messages (call after every step that touched it)."""
        if self.session is None or self.state == "closed":
            return
        if self.session.video is not None:
            for ev in self.session.video.events():
                self._video_event(ev)
        for ev in self.session.events():
            self._event(ev)

    # ---- internals ---------------------------------------------------------------------------
    def _advance(self) -> None:
        self.collect()

    def _event(self, ev: Event) -> None:
        if isinstance(ev, PartialEvent):
            self._send({"type": "partial", "text": ev.text, "media_ms": round(ev.media_ms, 1)})
        elif isinstance(ev, CommitEvent):
            self._send({"type": "commit", "text": ev.text, "words": [u.to_json() for u in ev.units]})
        elif isinstance(ev, ErrorEvent):
            self._send(error_message(ev.code, ev.message, ev.fatal))
            if ev.fatal:
                self.state = "stopping"
                self._pending_close = self._pending_close or (close_code_for(ev.code), ev.message)
                if ev.code in UNRECOVERABLE:
                    self._end(self.session.committed, self.session.stream.received_ms, self.session.summary())
        elif isinstance(ev, EndEvent):
            self._end(ev.units, ev.source_ms, ev.summary)

    def _video_event(self, ev) -> None:
        """Lip activity goes out as ``lips``; the video session's errors are never fatal to the
        captioning session (it goes on without video scores)."""
        if isinstance(ev, StepOutput) and ev.result.lips:
            self._send({"type": "lips", "frames": [a.to_json() for a in ev.result.lips]})
        elif isinstance(ev, ErrorEvent):
            self._send(error_message(ev.code, f"video: {ev.message}", False))

    def _end(self, units, source_ms: float, summary: dict) -> None:
        self._send(
            {
                "type": "end",
                "session_id": self.session.id,
                "text": " ".join(u.text for u in units),
                "words": len(units),
                "source_ms": round(source_ms, 1),
                "summary": summary,
            }
        )
        self._close(*(self._pending_close or (CloseCode.NORMAL, "end of stream")))
