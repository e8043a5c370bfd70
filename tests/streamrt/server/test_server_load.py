"""Many concurrent sessions on one shared model; clients that vanish; a client that never reads."""

from __future__ import annotations

import asyncio
import json
import random
import socket

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from streamrt.clients.ws_client import stream_samples
from streamrt.server.settings import ServerSettings

START = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1}


async def vanishing_client(server, rng: random.Random) -> None:
    """Start, send some audio, then disappear without stop (abort or a bare close)."""
    ws = await connect(server.url + "/v1/stream")
    await ws.send(json.dumps(START))
    for _ in range(rng.randint(0, 12)):
        await ws.send(np.zeros(1600, "<i2").tobytes())
        await asyncio.sleep(rng.uniform(0, 0.02))
    if rng.random() < 0.5:
        ws.transport.abort()
    else:
        await ws.close()


async def test_50_concurrent_clients_random_disconnects_no_lost_commits(make_server):
    server = await make_server(ServerSettings(max_sessions=100), word_ms=250.0)
    rng = random.Random(5)
    seconds = [rng.choice([1.0, 1.5, 2.0]) for _ in range(50)]
    vanish = set(rng.sample(range(50), 15))

    async def run(i: int):
        await asyncio.sleep(rng.uniform(0, 0.3))
        if i in vanish:
            return await vanishing_client(server, rng)
        audio = (0.05 * np.sin(np.arange(int(16000 * seconds[i])) / 5.0)).astype(np.float32)
        return await stream_samples(server.url, audio, speed=4.0, chunk_ms=100)

    results = await asyncio.gather(*(run(i) for i in range(50)))
    for i, res in enumerate(results):
        if i in vanish:
            continue
        n_words = int(seconds[i] / 0.25)
        assert [w["text"] for w in res.words] == [f"w{k}" for k in range(n_words)], i
        assert res.end["words"] == n_words and res.close_code == 1000 and not res.errors
    await asyncio.sleep(0.1)
    assert server.stats.sessions_started == 50 and server.stats.connections_active == 0
    assert server.stats.disconnected_early == 15
    assert server.scheduler.stats()["batch_size_max"] > 1  # steps of different sessions were batched
    assert not server.scheduler.sessions  # nothing left behind in the scheduler


async def test_slow_client_bounded_queue_then_clear_close(make_server):
    settings = ServerSettings(
        send_queue_high_water=32, max_buffered_audio_s=None, write_buffer_high_bytes=4096, write_buffer_low_bytes=1024
    )
    server = await make_server(settings, word_ms=10.0)  # ~20 words per step: big commit messages
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.setblocking(False)
    ws = await connect(server.url + "/v1/stream", sock=sock, max_queue=1)
    await ws.send(json.dumps(START))
    chunk = np.zeros(16000, "<i2").tobytes()
    for _ in range(600):  # up to 10 minutes of audio, never reading
        try:
            await ws.send(chunk)
        except ConnectionClosed:
            break
        if server.stats.closed_slow_client:
            break
        await asyncio.sleep(0.002)
    # on a loaded machine the server may still be working through the audio when the client stops
    # sending: it keeps producing commits for the unread socket until the queue limit cuts it off
    assert await _eventually(lambda: server.stats.closed_slow_client == 1, timeout_s=30.0)
    assert server.stats.max_send_queue <= 33  # bounded: the queue never grew past the limit + 1
    got = []
    try:
        async for raw in ws:
            got.append(json.loads(raw))
    except ConnectionClosed:
        pass
    assert ws.close_code == 1008 and "send_queue_high_water" in ws.close_reason
    assert server.stats.connections_active == 0 or await _eventually(lambda: server.stats.connections_active == 0)
    # the server is fine: the next client is served normally
    res = await stream_samples(server.url, np.zeros(8000, np.float32), speed=0)
    assert res.close_code == 1000 and res.end is not None


async def _eventually(cond, timeout_s: float = 3.0) -> bool:
    for _ in range(int(timeout_s / 0.05)):
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


async def test_a_failing_model_step_ends_that_session_only(make_server):
    server = await make_server()
    model = server.model
    good_step = type(model).step

    def step(streams):  # the model raises for streams of sessions that asked for language "xx"
        for s in streams:
            if getattr(s, "poisoned", False) and s.consumed_ms >= 400:
                err = RuntimeError("kernel exploded")
                err.stream = s
                raise err
        good_step(model, streams)

    create = model.create_stream

    def create_stream(options=None):
        stream = create(options)
        stream.poisoned = (options or {}).get("language") == "xx"
        return stream

    model.step, model.create_stream = step, create_stream
    audio = np.zeros(16000 * 2, np.float32)
    results = await asyncio.gather(
        stream_samples(server.url, audio, speed=4.0, options={"language": "xx"}),
        *(stream_samples(server.url, audio, speed=4.0) for _ in range(3)),
    )
    bad, *good = results
    assert bad.close_code == 1011 and bad.errors[0]["code"] == "model_error" and bad.end is not None
    assert bad.end["words"] == len(bad.words)  # what was committed before the failure
    for res in good:
        assert [w["text"] for w in res.words] == ["w0", "w1", "w2", "w3"] and res.close_code == 1000
