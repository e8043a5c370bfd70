"""Joins one ``DialogueProtocol`` to the clock and to an outgoing message channel.

The transport feeds client input to the protocol and calls ``after_input()``; a ticker calls
``proto.tick()`` every ``dialogue_tick_ms`` (the session paces the agent's audio by its clock, so
audio comes out between client messages too), and at once when the session reports new output
(``updated``, set by its ``on_update``); a sender task drains the bounded send queue (JSON
objects as text, agent audio as binary) and finally closes the link. A link that buffers the agent's
audio itself (the WebRTC track) gives ``drop_audio``, called as ``agent_pause`` or ``interrupted``
goes out. A client that stops reading
fills the queue; past ``send_queue_high_water`` messages it is closed with 1008 ``slow_client``.
The messages on their way out are counted in ``ServerStats`` (dialogues, agent turns and their
response onset, barge-ins and their reaction, errors: ``GET /metrics``, docs/operations.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Awaitable, Callable

from streamrt.errors import StreamrtError
from streamrt.server.bridge import QueueBridge
from streamrt.server.dialogue_protocol import DialogueProtocol
from streamrt.server.metrics import ServerStats
from streamrt.server.settings import ServerSettings

log = logging.getLogger("streamrt.server")
DROP_AUDIO_ON = ("agent_pause", "interrupted")  # the client stops playing the agent's audio it holds


class DialogueBridge(QueueBridge):
    def __init__(
        self,
        proto: DialogueProtocol,
        settings: ServerSettings,
        stats: ServerStats,
        send_text: Callable[[str], Awaitable[None]],
        send_bytes: Callable[[bytes], Awaitable[None]],
        close: Callable[[int, str], Awaitable[None]],
        drop_audio: Callable[[], None] | None = None,
        updated: asyncio.Event | None = None,
    ):
        self.proto = proto
        self._drop_audio = drop_audio  # a link that buffers agent audio itself (a WebRTC track)
        self._updated = updated or asyncio.Event()  # set by the session's on_update: tick before the period ends
        self.settings = settings
        self.stats = stats
        self._send_text = send_text
        self._send_bytes = send_bytes
        self._close = close
        self.queue: deque[dict | bytes] = deque()
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._started = False  # counted in stats.session_started
        self._left = False  # counted in stats.session_ended
        self._ended = False  # ``end`` was queued
        self._end_reason: str | None = None
        self.closed = asyncio.Event()
        self._last_input_s = asyncio.get_running_loop().time()
        self._speech_end_ms: float | None = None  # of the user turn being answered (user_turn_end)
        self._paused: tuple[int, float] | None = None  # (turn, media ms) of the last agent_pause not resumed

    # ---- called by the transport ---------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._send_loop()), asyncio.create_task(self._tick_loop())]

    def after_input(self) -> None:
        """Call after every protocol call the transport made (receive_*, stop, fail, shutdown)."""
        self._last_input_s = asyncio.get_running_loop().time()
        if self.proto.session is not None and not self._started:
            self._started = True
            self.stats.session_started()
            self.stats.dialogue_started()
        self._flush()

    # ---- internals -----------------------------------------------------------------------------
    def _detach(self) -> None:
        if self._started and not self._left:
            self._left = True
            reason = self._end_reason or ("end" if self._ended else "connection_lost")
            self.stats.session_ended(reason, self._ended, self.proto.received_s)
            self.stats.dialogue_ended()
            log.info("dialogue_end session_id=%s reason=%s audio_s=%.3f agent_audio_s=%.3f", self.proto.session_id,
                     reason, self.proto.received_s, self.proto.sent_audio_s)

    def _flush(self) -> None:
        for msg in self.proto.data_to_send():
            if isinstance(msg, dict):
                self._count(msg)
            self.queue.append(msg)
        self._after_queueing()

    def _count(self, msg: dict) -> None:
        kind = msg["type"]
        if kind == "error":
            self._count_error(msg)
            self.stats.dialogue_error(msg["code"])
        elif kind == "end":
            self._ended = True
        elif kind == "user_turn_end":
            self._speech_end_ms = msg.get("speech_end_ms")
        elif kind == "agent_turn_start":
            end, self._speech_end_ms = self._speech_end_ms, None
            self.stats.agent_turn(None if end is None else (msg["media_ms"] - end) / 1000.0)
        elif kind == "agent_pause":
            self._paused = (msg["turn"], msg["media_ms"])
        elif kind == "agent_resume":
            self._paused = None
        elif kind == "interrupted":  # the agent's audio stopped at its pause, if one came first
            onset, paused, self._paused = msg.get("speech_start_ms"), self._paused, None
            stopped = paused[1] if paused is not None and paused[0] == msg["turn"] else msg["media_ms"]
            self.stats.interrupted(None if onset is None else (stopped - onset) / 1000.0)

    async def _tick_loop(self) -> None:
        period = self.settings.dialogue_tick_ms / 1000.0
        while self.proto.close is None:
            try:
                await asyncio.wait_for(self._updated.wait(), period)
            except TimeoutError:
                pass
            self._updated.clear()
            try:
                self.proto.tick()
            except Exception as e:  # a session bug ends this dialogue, never the server
                log.exception("dialogue session %s failed", self.proto.session_id)
                self.proto.abort(StreamrtError(f"the dialogue failed: {type(e).__name__}: {e}", code="internal_error"))
            self._flush()

    async def _send_one(self, msg: dict | bytes) -> None:
        if isinstance(msg, bytes):
            await self._send_bytes(msg)
        else:
            await self._send_text(json.dumps(msg, separators=(",", ":")))
            if msg["type"] in DROP_AUDIO_ON and self._drop_audio is not None:
                self._drop_audio()  # the audio before it is stale: drop what the link holds
