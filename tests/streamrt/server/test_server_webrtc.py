"""WebRTC: an in-process aiortc client sends a file's audio as a track; captions come back on the
data channel; signalling over /v1/webrtc."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

aiortc = pytest.importorskip("aiortc")
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.contrib.media import MediaPlayer  # noqa: E402


async def test_webrtc_track_in_captions_out_on_the_data_channel(make_server, tmp_path):
    server = await make_server()
    wav = tmp_path / "tone.wav"
    t = np.arange(48000 * 2) / 48000
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 48000, subtype="PCM_16")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    player = MediaPlayer(str(wav))
    pc.addTrack(player.audio)
    channel = pc.createDataChannel("captions")
    got: list[dict] = []
    ended = asyncio.Event()

    @channel.on("message")
    def on_message(message):
        got.append(json.loads(message))
        if got[-1]["type"] == "end":
            ended.set()

    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with connect(server.url + "/v1/webrtc") as ws:
            offer = {"type": "offer", "sdp": pc.localDescription.sdp, "start": {"policy": "wait-k"}}
            await ws.send(json.dumps(offer))
            answer = json.loads(await ws.recv())
            assert answer["type"] == "answer"
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
            await asyncio.sleep(2.5)  # the player sends the file in real time
            channel.send(json.dumps({"type": "stop"}))
            await asyncio.wait_for(ended.wait(), 15)
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except ConnectionClosed:
                pass
            assert ws.close_code == 1000
    finally:
        await pc.close()
    kinds = [m["type"] for m in got]
    assert kinds[0] == "ready" and got[0]["options"] == {"policy": "wait-k"} and kinds[-1] == "end"
    words = [w["text"] for m in got if m["type"] == "commit" for w in m["words"]]
    assert len(words) >= 2 and words == [f"w{i}" for i in range(len(words))]  # ~2 s of 500 ms words
    assert got[-1]["words"] == len(words) and 1000 < got[-1]["source_ms"] < 3000
    assert server.stats.sessions_started == 1


async def test_webrtc_refused_start_is_an_error_on_the_signalling_socket(make_server):
    server = await make_server()
    async with connect(server.url + "/v1/webrtc") as ws:
        await ws.send(json.dumps({"type": "offer", "sdp": "v=0", "start": {"policy": "nope"}}))
        msg = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert msg["code"] == "unknown_policy" and ws.close_code == 1008


async def test_webrtc_not_an_offer(make_server):
    server = await make_server()
    async with connect(server.url + "/v1/webrtc") as ws:
        await ws.send(json.dumps({"type": "start"}))
        msg = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert msg["code"] == "bad_message" and ws.close_code == 1008
