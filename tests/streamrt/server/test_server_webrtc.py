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

pytest.importorskip("aiortc")
from streamrt.clients.webrtc_client import stream_file_webrtc  # noqa: E402


async def test_webrtc_track_in_captions_out_on_the_data_channel(make_server, tmp_path):
    server = await make_server()
    wav = tmp_path / "tone.wav"
    t = np.arange(48000 * 2) / 48000
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 48000, subtype="PCM_16")
    res = await stream_file_webrtc(server.url, wav, options={"policy": "wait-k"})
    kinds = [m["type"] for m in res.messages]
    assert kinds[0] == "ready" and res.ready["options"] == {"policy": "wait-k"} and kinds[-1] == "end"
    words = [w["text"] for w in res.words]
    assert len(words) >= 3 and words == [f"w{i}" for i in range(len(words))]  # ~2 s of 500 ms words
    assert res.end["words"] == len(words) and 1500 < res.end["source_ms"] < 3000
    assert res.close_code == 1000 and server.stats.sessions_started == 1


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


async def test_webrtc_connections_still_negotiating_count_toward_max_sessions(make_server):
    from streamrt.server.settings import ServerSettings

    server = await make_server(ServerSettings(max_sessions=1))
    async with connect(server.url + "/v1/webrtc") as negotiating:  # admitted, no offer sent yet
        await negotiating.ping()
        async with connect(server.url + "/v1/stream") as second:
            msg = json.loads(await second.recv())
            with pytest.raises(ConnectionClosed):
                await second.recv()
        assert msg["code"] == "server_busy" and second.close_code == 1013
    # the negotiating connection went away without an offer: its admission is released
    for _ in range(100):
        if server._signalling == 0:
            break
        await asyncio.sleep(0.02)
    assert server._signalling == 0
