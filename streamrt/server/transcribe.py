"""A whole file through the same machinery as a live session: protocol, bridge, scheduler.

``transcribe(hub, samples, options)`` makes a ``ServerProtocol`` as a WebSocket client would get,
starts it at the model's rate, feeds the audio faster than real time but never more than
``upload_ahead_s`` (nor ``max_buffered_audio_s``) ahead of the model, stops it once the model has
worked that backlog off (so the last step is no bigger than a live client's) and waits for ``end``.
The session is registered with the hub like any other: it counts toward ``max_sessions``, the one
scheduler steps it, and a drain ends it. It is *background* work unless ``options`` says
``"background": False``: it steps in the live sessions' slack and never turns the degradation
ladder up for them (``streamrt.scheduler``, "Background work").
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import numpy as np

from streamrt.errors import StreamrtError
from streamrt.server.bridge import SessionBridge
from streamrt.server.hub import SessionHub

FEED_CHUNK_S = 0.5  # audio per fed message
POLL_S = 0.01  # how often the feeder looks whether the model caught up


@dataclass
class Transcript:
    """What a finished upload produced: every committed word (``Unit.to_json()`` dicts, times in
    source milliseconds), the text and the session summary."""

    text: str
    words: list[dict]
    duration_s: float
    summary: dict = field(default_factory=dict)


class TranscriptionFailed(StreamrtError):
    """The session ended with a fatal error (``code`` is the protocol's error code)."""


async def transcribe(
    hub: SessionHub,
    samples: np.ndarray,
    options: dict,
    on_message: Callable[[dict], Awaitable[None]] | None = None,
) -> Transcript:
    """Transcribe mono float32 ``samples`` at ``hub.model.sample_rate``. ``options``: start fields
    (policy, policy_options, language, task, background: default True). ``on_message`` sees every protocol message (ready,
    partial, commit, error, end) as it comes. Raises ``TranscriptionFailed`` (or the admission
    error) when the session could not run to ``end``."""
    refusal = hub.admit()
    if refusal is not None:
        raise TranscriptionFailed(refusal.message, code=refusal.code)
    messages: list[dict] = []

    async def send(text: str) -> None:
        msg = json.loads(text)
        messages.append(msg)
        if on_message is not None:
            await on_message(msg)

    async def close(code: int, reason: str) -> None:
        pass

    proto = hub.new_protocol()
    bridge = SessionBridge(proto, hub.scheduler, hub.settings, hub.stats, send, close)
    hub.register(bridge)
    bridge.start()
    try:
        rate = hub.model.sample_rate
        proto.start({"type": "start", "sample_rate": rate, "encoding": "pcm_f32le", "channels": 1, "background": True,
                     **options})
        bridge.after_input()
        if proto.session is not None:
            await _feed(proto, bridge, samples, rate, hub.settings)
            if proto.state == "streaming":
                proto.stop()
                bridge.after_input()
        await bridge.wait_closed()
    finally:
        if proto.state != "closed":  # cancelled (the HTTP client went away)
            bridge.connection_lost()
        hub.unregister(bridge)
    fatal = [m for m in messages if m["type"] == "error" and m["fatal"]]
    end = next((m for m in messages if m["type"] == "end"), None)
    if fatal or end is None:
        err = fatal[0] if fatal else {"code": "internal_error", "message": "the session closed without end"}
        raise TranscriptionFailed(err["message"], code=err["code"])
    words = [w for m in messages if m["type"] == "commit" for w in m["words"]]
    return Transcript(end["text"], words, len(samples) / rate, end["summary"])


async def _feed(proto, bridge: SessionBridge, samples: np.ndarray, rate: int, settings) -> None:
    """Send the audio in chunks, keeping the session's backlog within the limits."""
    ahead_s = settings.upload_ahead_s
    if settings.max_buffered_audio_s is not None:
        ahead_s = min(ahead_s, settings.max_buffered_audio_s)
    chunk = max(1, int(min(FEED_CHUNK_S, ahead_s) * rate))
    if settings.max_message_bytes is not None:
        chunk = max(1, min(chunk, settings.max_message_bytes // 4))  # pcm_f32le: 4 bytes a sample
    pos = 0
    while pos < len(samples) and proto.state == "streaming":
        piece = samples[pos : pos + chunk]
        if proto.session.backlog_s + len(piece) / rate > ahead_s:
            await asyncio.sleep(POLL_S)  # the scheduler steps the session meanwhile
            continue
        proto.receive_binary(piece.astype("<f4", copy=False).tobytes())
        bridge.after_input()
        pos += len(piece)
    # The end of input goes once the model has worked the backlog off (less than one step left), as
    # a real-time client's does: sent with up to ahead_s of backlog, the stream's last step would
    # read and decode it all at once, and at the ladder's long chunks AlignAtt lost the tail of the
    # file that way (docs/benchmarks.md, "HTTP uploads").
    while proto.state == "streaming" and (proto.session.in_step or proto.session.ready()):
        await asyncio.sleep(POLL_S)
