"""A WebRTC client (aiortc): a file's audio as a track, captions back on a data channel.

    result = await stream_file_webrtc("ws://127.0.0.1:8765", "speech.wav", on_message=print)

Signalling over ``/v1/webrtc`` (docs/protocol.md, WebRTC). aiortc's MediaPlayer sends the file in
real time; ``stop`` goes on the data channel once the file has been played. ``video=FramesTrack(frames)``
sends RGB frames as a camera track beside it (start with ``options={"video": True}``: lip activity
comes back as ``lips`` messages, docs/video.md).
"""

from __future__ import annotations

import asyncio
import fractions
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from streamrt.clients.ws_client import StreamResult

if TYPE_CHECKING:
    import numpy as np

WEBRTC_PATH = "/v1/webrtc"
VIDEO_CLOCK_HZ = 90000  # RTP's video clock


def FramesTrack(frames):
    """An aiortc video track that plays ``frames`` ([(time_ms, (H, W, 3) uint8 RGB)], times
    increasing) in real time from when it is first read, as a camera would."""
    import time as _time

    import av
    from aiortc.mediastreams import MediaStreamError, VideoStreamTrack

    class _FramesTrack(VideoStreamTrack):
        def __init__(self):
            super().__init__()
            self._frames = list(frames)
            self._i = 0
            self._t0: float | None = None

        async def recv(self):
            if self._i >= len(self._frames):
                self.stop()
                raise MediaStreamError
            t_ms, rgb = self._frames[self._i]
            self._i += 1
            if self._t0 is None:
                self._t0 = _time.monotonic() - t_ms / 1000.0
            delay = self._t0 + t_ms / 1000.0 - _time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = int(round(t_ms * VIDEO_CLOCK_HZ / 1000.0))
            frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_HZ)
            return frame

    return _FramesTrack()


def webrtc_url(url: str) -> str:
    if url.startswith("http"):
        url = "ws" + url[4:]
    base = url.rstrip("/")
    for suffix in ("/v1/stream", WEBRTC_PATH):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base + WEBRTC_PATH


def _collect_messages(channel, result: StreamResult, ended: asyncio.Event, on_message) -> None:
    """Keep every JSON message the server sends on ``channel`` in ``result`` (``ready`` and
    ``end`` also in their fields), set ``ended`` at ``end``, and pass each to ``on_message``."""

    @channel.on("message")
    def on_channel_message(raw) -> None:
        msg = json.loads(raw)
        result.messages.append(msg)
        if msg["type"] == "ready":
            result.ready = msg
        elif msg["type"] == "end":
            result.end = msg
            ended.set()
        if on_message is not None:
            on_message(msg)


async def stream_file_webrtc(
    url: str,
    path: str | Path,
    *,
    options: dict | None = None,
    on_message: Callable[[dict], None] | None = None,
    token: str | None = None,
    end_timeout_s: float = 30.0,
    video=None,
) -> StreamResult:
    """Play ``path`` to the server over WebRTC; return what came back on the data channel."""
    import soundfile as sf
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer

    duration_s = sf.info(str(path)).duration
    result = StreamResult()
    ended = asyncio.Event()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    player = MediaPlayer(str(path))
    pc.addTrack(player.audio)
    if video is not None:
        pc.addTrack(video)
    channel = pc.createDataChannel("captions")

    _collect_messages(channel, result, ended, on_message)

    headers = {"Authorization": f"Bearer {token}"} if token else None
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with connect(webrtc_url(url), additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp, "start": options or {}}))
            answer = json.loads(await ws.recv())
            if answer.get("type") != "answer":
                result.messages.append(answer)
                try:
                    await ws.recv()
                except ConnectionClosed:
                    pass
            else:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
                await asyncio.sleep(duration_s + 0.3)  # the player sends in real time
                if channel.readyState == "open":
                    channel.send(json.dumps({"type": "stop"}))
                await asyncio.wait_for(ended.wait(), end_timeout_s)
                try:
                    await asyncio.wait_for(ws.recv(), 5)
                except (ConnectionClosed, TimeoutError):
                    pass
        result.close_code, result.close_reason = ws.close_code, ws.close_reason or ""
    finally:
        await pc.close()
    return result


async def talk_webrtc(
    url: str,
    path: str | Path,
    *,
    start: dict | None = None,
    on_message: Callable[[dict], None] | None = None,
    token: str | None = None,
    end_timeout_s: float = 30.0,
    video=None,
) -> tuple[StreamResult, np.ndarray]:
    """Play ``path`` to the voice agent as the microphone track (``"agent": true`` offer); return
    the data channel's messages and the agent's voice as received on its track (mono float32 at
    48 kHz, silence included). The dialogue ends (``stop``) when the file has been played.
    ``video``: a camera track beside it (``FramesTrack``; start with ``{"video": True}``)."""
    import numpy as np
    import soundfile as sf
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer
    from aiortc.mediastreams import MediaStreamError

    duration_s = sf.info(str(path)).duration
    result = StreamResult()
    ended = asyncio.Event()
    heard: list[np.ndarray] = []
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    player = MediaPlayer(str(path))
    pc.addTrack(player.audio)  # sendrecv: the agent's voice comes back on the same transceiver
    if video is not None:
        pc.addTrack(video)
    channel = pc.createDataChannel("dialogue")
    tasks: list[asyncio.Task] = []

    _collect_messages(channel, result, ended, on_message)

    async def listen(track) -> None:
        import av

        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            for out in resampler.resample(frame):
                heard.append(out.to_ndarray().reshape(-1).astype(np.float32) / 32768.0)

    @pc.on("track")
    def on_track(track) -> None:
        if track.kind == "audio":
            tasks.append(asyncio.create_task(listen(track)))

    headers = {"Authorization": f"Bearer {token}"} if token else None
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with connect(webrtc_url(url), additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "offer", "agent": True, "sdp": pc.localDescription.sdp,
                                      "start": start or {}}))
            answer = json.loads(await ws.recv())
            if answer.get("type") != "answer":
                result.messages.append(answer)
            else:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
                await asyncio.sleep(duration_s + 0.3)
                if channel.readyState == "open":
                    channel.send(json.dumps({"type": "stop"}))
                await asyncio.wait_for(ended.wait(), end_timeout_s)
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except (ConnectionClosed, TimeoutError):
                pass
        result.close_code, result.close_reason = ws.close_code, ws.close_reason or ""
    finally:
        for t in tasks:
            t.cancel()
        await pc.close()
    return result, (np.concatenate(heard) if heard else np.zeros(0, np.float32))
