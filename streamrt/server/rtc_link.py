"""What both WebRTC handlers (captions, ``streamrt.server.webrtc``; the voice agent,
``streamrt.server.webrtc_dialogue``) share: refusing on the signalling socket, starting the
protocol from the offer's start fields, answering the offer, the data channel as the bridge's
message link, and feeding the incoming audio track to the protocol."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from streamrt.server.protocol import close_code_for, error_message

TRACK_RATE_HZ = 16000  # what the decoded audio track is resampled to before the protocol sees it


async def refuse(ws: ServerConnection, code: str, message: str) -> None:
    try:
        await ws.send(json.dumps(error_message(code, message, True)))
        await ws.close(close_code_for(code), code)
    except ConnectionClosed:
        pass


async def start_or_refuse(ws: ServerConnection, proto, start: dict) -> bool:
    """Start ``proto`` with the offer's start fields on the track's format; False (the refusal sent
    on the signalling socket, which is closed) if they were refused."""
    proto.start({**start, "type": "start", "sample_rate": TRACK_RATE_HZ, "encoding": "pcm_s16le", "channels": 1})
    if proto.close is None:
        return True
    for msg in proto.data_to_send():
        await ws.send(json.dumps(msg))
    await ws.close(*proto.close)
    return False


async def answer(pc, ws: ServerConnection, sdp: str) -> None:
    """Take the client's offer and send the answer on the signalling socket."""
    from aiortc import RTCSessionDescription

    await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    await ws.send(json.dumps({"type": "answer", "sdp": pc.localDescription.sdp}))


async def feed_audio_track(track, proto, bridge, live_state: str) -> None:
    """Decoded audio frames -> 16 kHz mono s16 PCM -> the protocol, while it is in ``live_state``;
    the end of the track is the end of the audio (``stop``)."""
    import av
    from aiortc.mediastreams import MediaStreamError

    resampler = av.AudioResampler(format="s16", layout="mono", rate=TRACK_RATE_HZ)
    while proto.state == live_state:
        try:
            frame = await track.recv()
        except MediaStreamError:
            break
        for out in resampler.resample(frame):
            if proto.state != live_state:
                break
            proto.receive_binary(out.to_ndarray().tobytes())
            bridge.after_input()
    if proto.state == live_state:  # the track ended: that is the end of the audio
        proto.stop()
        bridge.after_input()


class DataChannelLink:
    """send/close for the bridge over the data channel, with the channel's buffer as backpressure."""

    def __init__(self, pc, ws: ServerConnection, high_water_bytes: int):
        self.pc = pc
        self.ws = ws
        self.channel = None
        self.high_water_bytes = high_water_bytes

    async def send(self, text: str) -> None:
        if self.channel is None or self.channel.readyState != "open":
            raise ConnectionError("the data channel is not open")
        self.channel.send(text)
        while self.channel.bufferedAmount > self.high_water_bytes and self.channel.readyState == "open":
            await asyncio.sleep(0.01)

    def attach(self, channel, proto, bridge) -> None:
        """The client's data channel: its text messages go to ``proto``; the bridge starts sending
        once it is open."""
        self.channel = channel

        @channel.on("message")
        def on_message(message) -> None:
            if isinstance(message, str):
                proto.receive_text(message)
                bridge.after_input()

        if channel.readyState == "open":
            bridge.start()
        else:
            channel.on("open", bridge.start)

    async def close(self, code: int, reason: str) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            for _ in range(100):  # let SCTP take the last messages (end) before the channel goes
                if self.channel.bufferedAmount == 0:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            self.channel.close()
        try:
            await self.ws.close(code, reason)
        except ConnectionClosed:
            pass
