"""What both WebRTC handlers (captions, ``streamrt.server.webrtc``; the voice agent,
``streamrt.server.webrtc_dialogue``) share: refusing on the signalling socket, starting the
protocol from the offer's start fields, answering the offer, the data channel as the bridge's
message link, feeding the incoming audio and camera tracks to the protocol, and the signalling
socket's loop with the idle timeout."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from streamrt.errors import StreamrtError
from streamrt.server.wire import close_code_for, error_message
from streamrt.types import VideoFrame

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


async def feed_video_track(track, proto, bridge, max_pixels: int | None) -> None:
    """Decoded camera frames -> RGB on the audio's media clock -> ``proto.receive_video``, while the
    protocol is live (``proto.LIVE_STATE``). The first frame is stamped with the audio received when
    it arrives (``proto.media_ms``), later ones by their own capture times (RTP) after it; frames
    over ``max_pixels`` are scaled down to fit. Frames of a session started without ``"video":
    true`` are read and dropped."""
    from aiortc.mediastreams import MediaStreamError

    live = proto.LIVE_STATE
    first: tuple[float, float] | None = None  # (the first frame's capture time s, media ms then)
    while proto.state == live:
        try:
            frame = await track.recv()
        except MediaStreamError:
            break
        if not proto.video_on or proto.state != live or frame.time is None:
            continue
        if first is None:
            first = (frame.time, proto.media_ms)
        time_ms = first[1] + 1000.0 * (frame.time - first[0])
        if max_pixels is not None and frame.width * frame.height > max_pixels:
            k = (max_pixels / (frame.width * frame.height)) ** 0.5
            frame = frame.reformat(width=max(2, int(frame.width * k) // 2 * 2), height=max(2, int(frame.height * k) // 2 * 2))
        proto.receive_video(VideoFrame(frame.to_ndarray(format="rgb24"), time_ms))
        bridge.after_input()


async def signalling_loop(ws: ServerConnection, proto, bridge, idle_s: float | None) -> None:
    """Messages on the signalling socket (it may carry stop; it closes after end). The media track
    counts as activity (``bridge.idle_for_s``): the session is idle, and fails with
    ``idle_timeout``, only when neither audio nor messages arrive for ``idle_s`` (setting
    ``idle_timeout_s``; a browser tab that vanished without closing, an ICE link that died)."""
    while True:
        try:
            async with asyncio.timeout(idle_s):
                raw = await ws.recv()
        except TimeoutError:
            if proto.state in ("await_start", proto.LIVE_STATE) and bridge.idle_for_s() >= idle_s:
                proto.fail(StreamrtError(f"no audio or message for {idle_s:g} s (setting idle_timeout_s)",
                                         code="idle_timeout"))
                bridge.after_input()
            continue
        if isinstance(raw, str):
            proto.receive_text(raw)
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
