"""The dialogue protocol (``/v1/dialogue``), sans-I/O: client messages in, a voice-agent session
driven, server messages (JSON objects and binary agent audio) out.

One ``DialogueProtocol`` per connection; the transport (``streamrt.server.dialogue_bridge``) must:

1. feed every client message to ``receive_text`` / ``receive_binary`` (``receive_too_big`` for one
   it skipped unread), and call ``tick()`` after each and every ``tick_ms`` in between (the agent's
   audio is paced by the session's clock, so it comes out on ticks, not only on input);
2. send everything ``data_to_send()`` returns, in order: a ``dict`` as a JSON text message, ``bytes``
   as a binary message (agent audio, ``output_encoding`` at ``output_sample_rate``);
3. once ``close`` is not None, send what is left and close with ``close == (code, reason)``.

Client messages: ``start`` (``sample_rate``, ``encoding``, ``channels``; optional
``output_sample_rate``, ``video`` and the agent's options ``AGENT_OPTIONS``), then binary PCM
continuously (silence included), ``playback`` reports (optional: ``turn`` and ``position_ms``, how
far the client has played that agent turn), camera frames as ``video`` messages (with ``"video":
true``; the captioning protocol's, ``streamrt.server.video``), and ``stop``. Server messages:
``ready``, then the session's events (``streamrt.dialogue.events``; an event's ``type`` is the
message's; ``lips`` carries the scored frames) and binary audio frames, and ``end`` last. Every problem becomes an ``error`` message naming it and the limit; nothing raises to
the transport. docs/protocol.md is the spec.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from streamrt.audio import MIN_SAMPLE_RATE_HZ, StreamResampler, check_format, decode_pcm, downmix
from streamrt.errors import AudioFormatError, ConfigError, LimitExceeded, ProtocolError, StreamrtError
from streamrt.server.protocol import PROTOCOL_VERSION, CloseCode, close_code_for, error_message, show
from streamrt.server.settings import ServerSettings
from streamrt.server.video import VideoIntake
from streamrt.server.wire import WireProtocol
from streamrt.types import ErrorEvent, VideoFrame

CLIENT_TYPES = ("start", "playback", "video", "stop")
AUDIO_FIELDS = ("type", "sample_rate", "encoding", "channels", "output_sample_rate", "video")
AGENT_OPTIONS = ("greeting", "system_prompt", "turn_policy")
OUTPUT_ENCODING = "pcm_s16le"
INPUT_RATE_HZ = 16000  # what the session takes (``DialogueCore.receive_audio``)
_ids = itertools.count(1)


class DialogueCore(Protocol):
    """What the protocol drives: a sans-I/O voice-agent session (``streamrt.dialogue.session``)."""

    @property
    def ended(self) -> bool: ...

    def receive_audio(self, samples: np.ndarray) -> None:
        """Mono float32 user audio at 16 kHz."""

    def receive_playback(self, turn: int, position_ms: float) -> None:
        """The client has played ``position_ms`` of agent turn ``turn``."""

    def receive_video(self, frame: VideoFrame) -> None:
        """A camera frame, ``time_ms`` on the audio's media clock (ms from the first audio sample)."""

    def receive_eof(self) -> None:
        """No more user audio; the session ends (``end`` event) once its output is out."""

    def events(self) -> list:
        """The events since the last call (advancing the session to its clock's now)."""

    def close(self) -> None:
        """Drop the session's work now (the client is gone)."""


class DialogueAgent(Protocol):
    """The shared parts of the voice agent (models, turn policy, settings): one session per client.

    ``models()``: the models the agent's sessions step, to put on the server's scheduler (name ->
    model; the ASR is the server's own model). ``new_session`` raises ``ConfigError`` for bad
    ``options`` (keys of ``AGENT_OPTIONS``)."""

    output_sample_rate: int  # Hz of the agent's audio (the TTS voice's rate)
    max_dialogues: int | None  # dialogues it holds at once (e.g. its LLM's slots); None: no bound
    scores_video: bool  # it has a lip-activity model: sessions may start with "video": true

    def models(self) -> Mapping[str, Any]: ...

    def new_session(self, options: Mapping[str, Any], *, scheduler: Any, session_id: str | None,
                    on_update: Callable[[], None] | None = None) -> DialogueCore:
        """``on_update()``: the session has new output (called on the event loop after a model step
        touched it), so the transport ticks it now rather than at its next tick."""

    def describe(self) -> dict: ...


@dataclasses.dataclass(frozen=True)
class DialogueStart:
    """A validated ``start`` message."""

    sample_rate: int
    encoding: str
    channels: int
    output_sample_rate: int
    options: dict[str, Any]
    video: bool = False  # the client sends camera frames (``video`` messages or a WebRTC camera track)


def parse_dialogue_start(msg: Mapping[str, Any], agent_rate: int) -> DialogueStart:
    """Validate a dialogue ``start``; raises ProtocolError / AudioFormatError (fatal)."""
    allowed = AUDIO_FIELDS + AGENT_OPTIONS
    unknown = sorted(set(msg) - set(allowed))
    if unknown:
        raise ProtocolError(f"start: unknown field(s) {', '.join(show(k, 40) for k in unknown[:5])}; allowed: "
                            f"{', '.join(allowed)}", code="bad_start", fatal=True)
    for name in ("sample_rate", "encoding"):
        if name not in msg:
            raise ProtocolError(f"start: missing required field {name!r}", code="bad_start", fatal=True)
    if not isinstance(msg["encoding"], str):
        raise ProtocolError(f"start: 'encoding' must be a string, got {show(msg['encoding'])}", code="bad_start", fatal=True)
    check_format(msg["encoding"], msg["sample_rate"], msg.get("channels", 1))
    out_rate = msg.get("output_sample_rate", agent_rate)
    if not isinstance(out_rate, int) or isinstance(out_rate, bool) or not MIN_SAMPLE_RATE_HZ <= out_rate <= 48000:
        raise AudioFormatError(f"unsupported output_sample_rate {show(out_rate)}; supported: integer Hz from "
                               f"{MIN_SAMPLE_RATE_HZ} to 48000 (default {agent_rate}, the voice's)",
                               code="unsupported_sample_rate", fatal=True)
    for name in AGENT_OPTIONS:
        if msg.get(name) is not None and not isinstance(msg[name], str):
            raise ProtocolError(f"start: {name!r} must be a string, got {show(msg[name])}", code="bad_start", fatal=True)
    video = msg.get("video", False)
    if not isinstance(video, bool):
        raise ProtocolError(f"start: 'video' must be true or false, got {show(video)}", code="bad_start", fatal=True)
    options = {k: msg[k] for k in AGENT_OPTIONS if msg.get(k) is not None}
    return DialogueStart(msg["sample_rate"], msg["encoding"], msg.get("channels", 1), out_rate, options, video)


def event_message(ev: Any) -> dict:
    """A session event (a dataclass with a ``type``) as its JSON message: its fields, milliseconds to
    0.1 ms, other numbers (a probability) to 4 significant digits. ``agent_audio`` is not a message
    (it goes out as a binary frame)."""
    out: dict[str, Any] = {"type": ev.type}
    for f in dataclasses.fields(ev):
        v = getattr(ev, f.name)
        if isinstance(v, float):
            v = round(v, 1) if f.name.endswith("_ms") else float(f"{v:.4g}")
        out[f.name] = v
    return out


def pcm_s16le(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class DialogueProtocol(WireProtocol):
    """The protocol state of one ``/v1/dialogue`` connection: ``await_start`` -> ``talking`` ->
    ``stopping`` -> ``closed``. See the module docstring for what the transport must do."""

    LIVE_STATE = "talking"

    def __init__(self, agent: DialogueAgent, scheduler: Any, settings: ServerSettings = ServerSettings(),
                 *, session_id: str | None = None, on_update: Callable[[], None] | None = None):
        self.agent = agent
        self.on_update = on_update  # handed to the session: it has new output, tick now
        self.scheduler = scheduler
        self.settings = settings
        self.session_id = session_id or f"d{next(_ids)}"
        self.session: DialogueCore | None = None
        self.start_request: DialogueStart | None = None
        self.state = "await_start"
        self.close: tuple[int, str] | None = None
        self.received_s = 0.0  # user audio received, seconds
        self.sent_audio_s = 0.0  # agent audio sent, seconds
        self._outbox: list[dict | bytes] = []
        self._pending_close: tuple[int, str] | None = None
        self._in: StreamResampler | None = None
        self._out: StreamResampler | None = None
        self._video_in = VideoIntake(settings.max_video_frame_pixels)

    # ---- client input ------------------------------------------------------------------------
    def receive_text(self, text: str | bytes) -> None:
        msg = self._read_message(text)
        if msg is None:
            return
        kind = msg["type"]
        if kind == "start":
            self.start(msg)
        elif kind == "stop":
            self.stop()
        elif kind == "playback":
            self._playback(msg)
        elif kind == "video":
            self._video_message(msg)
        else:
            self._send(error_message("unknown_type", f"unknown message type {show(kind)}; known: "
                                     f"{', '.join(CLIENT_TYPES)} (ignored)", False))

    def receive_binary(self, data: bytes) -> None:
        if self.state == "closed" or self._too_big(len(data)):
            return
        if self.session is None:
            self._fail(ProtocolError("binary audio before start: send a start message first", code="not_started",
                                     fatal=True))
            return
        if self.state != "talking":
            self._send(error_message("session_closed", "audio after stop is ignored", False))
            return
        req = self.start_request
        try:
            x = downmix(decode_pcm(bytes(data), req.encoding, req.channels))
        except AudioFormatError as e:
            self._send(error_message(e.code, f"{e.message} (message ignored)", False))
            return
        seconds = len(x) / req.sample_rate
        limit = self.settings.max_stream_s
        if limit is not None and self.received_s + seconds > limit:
            self._fail(LimitExceeded("max_stream_s", limit, round(self.received_s + seconds, 3), "s",
                                     what="audio in this session", fatal=True))
            return
        self.received_s += seconds
        self.session.receive_audio(self._in(x))
        self.tick()

    def start(self, msg: Mapping[str, Any]) -> None:
        if self.state != "await_start":
            self._send(error_message("already_started", "start sent twice; the session already started (ignored)", False))
            return
        try:
            req = parse_dialogue_start(msg, self.agent.output_sample_rate)
            if req.video and not self.agent.scores_video:
                raise ConfigError('start: "video": true, but this server scores no video (serve with --video, which '
                                  "needs the `video` extra)", code="video_unavailable")
            session = self.agent.new_session(req.options, scheduler=self.scheduler, session_id=self.session_id,
                                             on_update=self.on_update)
        except StreamrtError as e:
            self._fail(e if e.fatal else type(e)(e.message, code=e.code, fatal=True))
            return
        except Exception as e:  # a model bug must not take the server down
            self._fail(StreamrtError(f"could not start a dialogue: {type(e).__name__}: {e}", fatal=True))
            return
        self.start_request, self.session, self.state = req, session, "talking"
        self._in = StreamResampler(req.sample_rate, INPUT_RATE_HZ)
        self._out = StreamResampler(self.agent.output_sample_rate, req.output_sample_rate)
        self._send({
            "type": "ready",
            "protocol": PROTOCOL_VERSION,
            "session_id": self.session_id,
            "sample_rate": req.sample_rate,
            "encoding": req.encoding,
            "channels": req.channels,
            "output_sample_rate": req.output_sample_rate,
            "output_encoding": OUTPUT_ENCODING,
            "output_channels": 1,
            "video": req.video,
            "options": req.options,
            "settings": self.agent.describe(),
            "limits": {
                "max_message_bytes": self.settings.max_message_bytes,
                "max_stream_s": self.settings.max_stream_s,
                "idle_timeout_s": self.settings.idle_timeout_s,
                "max_video_frame_pixels": self.settings.max_video_frame_pixels,
            },
        })
        self.tick()

    def stop(self) -> None:
        if self.state == "await_start":
            self._fail(ProtocolError("stop before start", code="not_started", fatal=True))
        elif self.state == "talking":
            self.state = "stopping"
            self.session.receive_eof()
            self.tick()
        elif self.state == "stopping":
            self._send(error_message("already_stopped", "stop sent twice (ignored)", False))

    def _playback(self, msg: Mapping[str, Any]) -> None:
        turn, pos = msg.get("turn"), msg.get("position_ms")
        bad = sorted(set(msg) - {"type", "turn", "position_ms"})
        if bad or not isinstance(turn, int) or isinstance(turn, bool) or turn < 1 \
                or not isinstance(pos, (int, float)) or isinstance(pos, bool) or not pos >= 0:
            self._send(error_message("bad_playback", "playback needs 'turn' (an agent turn, integer >= 1) and "
                                     f"'position_ms' (number >= 0) only; got {show(dict(msg), 100)} (ignored)", False))
            return
        if self.state == "talking":
            self.session.receive_playback(turn, float(pos))
            self.tick()

    # ---- transport-side events ---------------------------------------------------------------
    def shutdown(self) -> None:
        if self.state in ("await_start", "talking", "stopping"):
            self._fail(StreamrtError("server is shutting down; the dialogue ends", code="shutting_down", fatal=True))

    def abort(self, error: StreamrtError) -> None:
        if self.state == "closed":
            return
        self._send(error_message(error.code, error.message, True))
        self._close(close_code_for(error.code), error.message)
        if self.session is not None:
            self.session.close()

    def connection_lost(self) -> None:
        if self.session is not None and not self.session.ended:
            self.session.close()
        self.state = "closed"
        if self.close is None:
            self.close = (CloseCode.GOING_AWAY, "connection lost")

    # ---- output ------------------------------------------------------------------------------
    def tick(self) -> None:
        """Advance the session to now and turn its events into messages."""
        if self.session is None or self.state == "closed":
            return
        for ev in self.session.events():
            self._event(ev)

    # ---- internals ---------------------------------------------------------------------------
    @property
    def video_on(self) -> bool:
        return self.start_request is not None and self.start_request.video

    @property
    def media_ms(self) -> float:
        return 1000.0 * self.received_s

    def _advance(self) -> None:
        self.tick()

    def _event(self, ev: Any) -> None:
        if ev.type == "agent_audio":
            x = self._out(ev.samples)
            self.sent_audio_s += len(x) / self.start_request.output_sample_rate
            if len(x):
                self._send(pcm_s16le(x))
        elif isinstance(ev, ErrorEvent):
            self._send(error_message(ev.code, ev.message, ev.fatal))
            if ev.fatal and self.state == "talking":
                self._pending_close = self._pending_close or (close_code_for(ev.code), ev.message)
                self.state = "stopping"
                self.session.receive_eof()
        elif ev.type == "lips":
            self._send({"type": "lips", "frames": [a.to_json() for a in ev.frames], "media_ms": round(ev.media_ms, 1)})
        elif ev.type == "end":
            msg = event_message(ev)
            msg.update(session_id=self.session_id, audio_s=round(self.received_s, 3),
                       agent_audio_s=round(self.sent_audio_s, 3))
            self._send(msg)
            self._close(*(self._pending_close or (CloseCode.NORMAL, "end of dialogue")))
        else:
            self._send(event_message(ev))
