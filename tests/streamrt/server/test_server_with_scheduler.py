"""The server with the real ``streamrt.scheduler.Scheduler`` (steps in a worker thread, batched),
counting model: every word arrives, stops without audio still end, shutdown drains."""

from __future__ import annotations

import asyncio
import json
import random

import numpy as np
import pytest
from websockets.asyncio.client import connect

from streamrt.clients.ws_client import stream_samples
from streamrt.server.settings import ServerSettings
from streamrt.server.ws import StreamServer
from streamrt.testing import CountingModel

scheduler = pytest.importorskip("streamrt.scheduler.scheduler", reason="streamrt.scheduler.Scheduler has not landed yet")

START = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1}


@pytest.fixture
async def server():
    srv = StreamServer(CountingModel(word_ms=250.0), settings=ServerSettings(model_name="counting"), port=0)
    await srv.start()
    yield srv
    await srv.stop()


async def test_concurrent_clients_every_word_with_the_real_scheduler(server):
    rng = random.Random(7)
    lengths = [rng.choice([1.0, 1.5, 2.0]) for _ in range(20)]

    async def one(seconds: float):
        audio = np.zeros(int(16000 * seconds), np.float32)
        return await stream_samples(server.url, audio, speed=4.0, chunk_ms=100)

    results = await asyncio.gather(*(one(s) for s in lengths))
    for seconds, res in zip(lengths, results):
        n = int(seconds / 0.25)
        assert [w["text"] for w in res.words] == [f"w{k}" for k in range(n)] and res.close_code == 1000
    assert not server.scheduler.sessions  # every finished session left the scheduler


async def test_stop_without_audio_still_ends(server):
    async with connect(server.url + "/v1/stream") as ws:
        await ws.send(json.dumps(START))
        await ws.send(json.dumps({"type": "stop"}))
        got = [json.loads(m) async for m in ws]
    assert [m["type"] for m in got] == ["ready", "end"] and got[-1]["words"] == 0 and ws.close_code == 1000


async def test_shutdown_drains_live_sessions_with_the_real_scheduler(server):
    pcm = np.zeros(8000, "<i2").tobytes()
    clients = [await connect(server.url + "/v1/stream") for _ in range(4)]
    for ws in clients:
        await ws.send(json.dumps(START))
        for _ in range(3):
            await ws.send(pcm)
    await asyncio.sleep(0.2)
    await server.stop()
    for ws in clients:
        got = [json.loads(m) async for m in ws]
        words = [w["text"] for m in got if m["type"] == "commit" for w in m["words"]]
        assert words == [f"w{k}" for k in range(6)] and got[-1]["type"] == "end" and ws.close_code == 1001
