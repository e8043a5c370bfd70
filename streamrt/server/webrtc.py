"""WebRTC transport (aiortc): an audio track into the same ``Session``, results on a data channel.

Signalling runs over the WebSocket ``/v1/webrtc`` (websockets serves only GET, so no HTTP POST):

    client -> {"type": "offer", "sdp": "...", "start": {"policy": ..., ...}}
    server -> {"type": "answer", "sdp": "..."}            (or an ``error`` and a close)

The offer must contain one audio track and a data channel. The server decodes the track (Opus,
48 kHz), resamples it to 16 kHz mono s16 with PyAV and feeds it to the protocol exactly like binary
WebSocket messages; ``ready``/``partial``/``commit``/``error``/``end`` (and ``lips``) go out as
JSON text on the data channel. A camera track too, with ``"video": true`` in the start fields: its
frames go to the session's lip-activity stream (``rtc_link.feed_video_track``), each stamped on
the audio's media clock: the first frame at the audio received when it arrives, later ones by their
own capture times (RTP) after it; frames over ``max_video_frame_pixels`` are scaled down to fit.
``{"type": "stop"}`` (on the data channel or the signalling WebSocket) or the end of the track
stops the session. No ICE servers are used: host candidates only (LAN / localhost).
An offer with ``"agent": true`` is a voice-agent dialogue instead (``streamrt.server.webrtc_dialogue``).
"""

from __future__ import annotations

import asyncio
import json
import logging

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from streamrt.errors import ProtocolError
from streamrt.server.bridge import SessionBridge
from streamrt.server.protocol import ServerProtocol
from streamrt.server.rtc_link import (DataChannelLink, answer, feed_audio_track, feed_video_track, refuse,
                                      signalling_loop, start_or_refuse)

log = logging.getLogger("streamrt.server.webrtc")

OFFER_TIMEOUT_S = 10.0


def _parse_offer(raw) -> tuple[str, dict, bool]:
    if not isinstance(raw, str):
        raise ProtocolError("the first /v1/webrtc message must be JSON text (an offer)", code="bad_message", fatal=True)
    try:
        msg = json.loads(raw)
    except ValueError as e:
        raise ProtocolError(f"text message is not JSON ({e})", code="not_json", fatal=True) from None
    if not isinstance(msg, dict) or msg.get("type") != "offer" or not isinstance(msg.get("sdp"), str):
        raise ProtocolError('expected {"type": "offer", "sdp": "...", "start": {...}}', code="bad_message", fatal=True)
    start = msg.get("start") or {}
    if not isinstance(start, dict):
        raise ProtocolError("'start' must be an object of start fields", code="bad_start", fatal=True)
    if not isinstance(msg.get("agent", False), bool):
        raise ProtocolError(f"'agent' must be true or false, got {msg['agent']!r}"[:120], code="bad_message", fatal=True)
    return msg["sdp"], start, msg.get("agent", False)


async def handle_webrtc_signalling(server, ws: ServerConnection, release_admission=lambda: None) -> None:
    """Run one WebRTC session signalled over ``ws``. Called by a transport (``ws``, ``asgi``) after admission;
    ``release_admission()`` is called once the session is registered (it then counts itself)."""
    try:
        from aiortc import RTCConfiguration, RTCPeerConnection
    except ImportError:
        await refuse(ws, "bad_config", "this server has no WebRTC support (pip install 'streamrt[webrtc]')")
        return
    try:
        sdp, start, agent = _parse_offer(await asyncio.wait_for(ws.recv(), OFFER_TIMEOUT_S))
    except (TimeoutError, ConnectionClosed):
        return
    except ProtocolError as e:
        await refuse(ws, e.code, e.message)
        return
    if agent:  # the voice agent: its own protocol, the agent's voice as an outgoing track
        from streamrt.server.webrtc_dialogue import handle_dialogue_webrtc

        await handle_dialogue_webrtc(server, ws, sdp, start, release_admission)
        return

    proto: ServerProtocol = server.new_protocol()
    if not await start_or_refuse(ws, proto, start):  # the refusal went out on the signalling socket
        return

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    link = DataChannelLink(pc, ws, server.settings.write_buffer_high_bytes)
    bridge = SessionBridge(proto, server.scheduler, server.settings, server.stats, link.send, link.close)
    server.register(bridge)
    release_admission()
    tasks: list[asyncio.Task] = []

    @pc.on("datachannel")
    def on_datachannel(channel) -> None:
        link.attach(channel, proto, bridge)

    @pc.on("track")
    def on_track(track) -> None:
        if track.kind == "audio":
            tasks.append(asyncio.create_task(feed_audio_track(track, proto, bridge, "streaming")))
        elif track.kind == "video":
            max_pixels = server.settings.max_video_frame_pixels
            tasks.append(asyncio.create_task(feed_video_track(track, proto, bridge, max_pixels)))

    try:
        await answer(pc, ws, sdp)
        bridge.after_input()  # hands the session to the scheduler; ``ready`` waits for the channel
        await signalling_loop(ws, proto, bridge, server.settings.idle_timeout_s)
    except ConnectionClosed:
        pass
    except Exception as e:  # a bad SDP, ICE failure...: this session only
        log.warning("webrtc session failed: %r", e)
        await refuse(ws, "bad_message", f"cannot use this offer: {type(e).__name__}: {e}")
    finally:
        if proto.state != "closed":
            bridge.connection_lost()
        for t in tasks:
            t.cancel()
        await pc.close()
        server.unregister(bridge)
