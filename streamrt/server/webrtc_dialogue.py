"""The voice agent over WebRTC (aiortc): the microphone as an incoming track, the agent's voice as an
outgoing track, the dialogue's JSON messages on a data channel.

Signalling is that of ``/v1/webrtc`` (``streamrt.server.webrtc``) with ``"agent": true`` in the offer:

    client -> {"type": "offer", "agent": true, "sdp": "...", "start": {"greeting": ..., ...}}
    server -> {"type": "answer", "sdp": "..."}            (or an ``error`` and a close)

The offer must carry one audio track sent *and received* (sendrecv) and a data channel, and may carry
a camera track (with ``"video": true`` in ``start``: its frames go to the session's lip activity on
the audio's media clock, ``rtc_link.feed_video_track``; ``lips`` messages come back). The
server decodes the microphone (Opus, 48 kHz) to 16 kHz s16 and feeds it to a ``DialogueProtocol``
as binary messages; the agent's audio frames go into ``AgentVoiceTrack``, which plays them in real
time (silence between turns) and drops what it holds when ``agent_pause`` or ``interrupted`` goes
out (the audio after an ``agent_resume`` is pushed again from the position resumed); everything else
(``ready``, ``user_commit``, ``agent_text``, ``agent_pause``, ``interrupted``, ``end``, ...) is JSON
on the data channel. ``stop`` (data channel or signalling socket) or the end of the track ends the dialogue;
so does ``idle_timeout_s`` without audio or a message (a client gone without closing).
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time

from websockets.exceptions import ConnectionClosed

from streamrt.server.dialogue_bridge import DialogueBridge
from streamrt.server.dialogue_protocol import DialogueProtocol

log = logging.getLogger("streamrt.server.webrtc")

FRAME_MS = 20


def voice_track_class():
    """``AgentVoiceTrack`` (aiortc is imported only when WebRTC is used)."""
    from aiortc import MediaStreamTrack

    class AgentVoiceTrack(MediaStreamTrack):
        """Plays pcm_s16le mono at ``rate`` pushed by the bridge, 20 ms a frame in real time; silence
        when it holds nothing. ``clear()`` drops what it holds (the user speaks over the agent)."""

        kind = "audio"

        def __init__(self, rate: int):
            super().__init__()
            self.rate = rate
            self.buffer = bytearray()
            self._start: float | None = None
            self._sent = 0  # samples

        def push(self, pcm: bytes) -> None:
            self.buffer += pcm

        def clear(self) -> None:
            self.buffer.clear()

        async def recv(self):
            import av
            from aiortc.mediastreams import MediaStreamError

            if self.readyState != "live":
                raise MediaStreamError
            n = self.rate * FRAME_MS // 1000
            if self._start is None:
                self._start = time.monotonic()
            else:
                await asyncio.sleep(max(0.0, self._start + self._sent / self.rate - time.monotonic()))
            chunk = bytes(self.buffer[: 2 * n])
            del self.buffer[: 2 * n]
            frame = av.AudioFrame(format="s16", layout="mono", samples=n)
            frame.planes[0].update(chunk + bytes(2 * n - len(chunk)))
            frame.pts = self._sent
            frame.sample_rate = self.rate
            frame.time_base = fractions.Fraction(1, self.rate)
            self._sent += n
            return frame

    return AgentVoiceTrack


async def handle_dialogue_webrtc(hub, ws, sdp: str, start: dict, release_admission) -> None:
    """One WebRTC dialogue signalled over ``ws`` (the offer already read). See the module docstring."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    from streamrt.server.rtc_link import (DataChannelLink, answer, feed_audio_track, feed_video_track, refuse,
                                          signalling_loop, start_or_refuse)

    refusal = hub.dialogue_refusal()
    if refusal is not None:
        await refuse(ws, refusal.code, refusal.message)
        return
    updated = asyncio.Event()
    proto = DialogueProtocol(hub.agent, hub.scheduler, hub.settings, on_update=updated.set)
    if not await start_or_refuse(ws, proto, start):  # the refusal went out on the signalling socket
        return
    voice = voice_track_class()(proto.start_request.output_sample_rate)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    link = DataChannelLink(pc, ws, hub.settings.write_buffer_high_bytes)

    async def send_bytes(pcm: bytes) -> None:
        voice.push(pcm)

    bridge = DialogueBridge(proto, hub.settings, hub.stats, link.send, send_bytes, link.close, drop_audio=voice.clear,
                            updated=updated)
    hub.register(bridge)
    release_admission()
    tasks: list[asyncio.Task] = []

    @pc.on("datachannel")
    def on_datachannel(channel) -> None:
        link.attach(channel, proto, bridge)

    @pc.on("track")
    def on_track(track) -> None:
        if track.kind == "audio":
            pc.addTrack(voice)  # the agent's voice on the same (sendrecv) transceiver
            tasks.append(asyncio.create_task(feed_audio_track(track, proto, bridge, "talking")))
        elif track.kind == "video":
            max_pixels = hub.settings.max_video_frame_pixels
            tasks.append(asyncio.create_task(feed_video_track(track, proto, bridge, max_pixels)))

    try:
        await answer(pc, ws, sdp)
        bridge.after_input()
        await signalling_loop(ws, proto, bridge, hub.settings.idle_timeout_s)
    except ConnectionClosed:
        pass
    except Exception as e:  # a bad SDP, ICE failure...: this session only
        log.warning("webrtc dialogue failed: %r", e)
        await refuse(ws, "bad_message", f"cannot use this offer: {type(e).__name__}: {e}")
    finally:
        if proto.state != "closed":
            bridge.connection_lost()
        for t in tasks:
            t.cancel()
        voice.stop()
        await pc.close()
        hub.unregister(bridge)
