"""Issue 17, part 1, the transport items on real localhost sockets (counting model, no weights):
invalid UTF-8 (5), holding a slot without starting (6), draining (7), slow handshakes (9)."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from streamrt.server.settings import ServerSettings
from tests.streamrt.server.server_helpers import PolicyCheckingModel, server_class
from tests.streamrt.server.test_server_ws import START, TONE, exchange, http_get

PCM_1S = (TONE[:16000] * 32767).astype("<i2").tobytes()


def committed(msgs: list[dict]) -> list[str]:
    return [w["text"] for m in msgs if m["type"] == "commit" for w in m["words"]]


async def test_item5_invalid_utf8_text_after_start_gets_error_every_word_and_end_then_1007(make_server):
    server = await make_server()
    async with connect(server.url + "/v1/stream") as ws:
        await ws.send(json.dumps(START))
        await ws.send(PCM_1S)
        await ws.send(PCM_1S)
        await ws.send(b'{"type":"\xff"}', text=True)  # a text frame that is not UTF-8
        got = []
        try:
            async for raw in ws:
                got.append(json.loads(raw))
        except ConnectionClosed:
            pass
    errors = [m for m in got if m["type"] == "error"]
    assert [e["code"] for e in errors] == ["not_utf8"] and "UTF-8" in errors[0]["message"]
    assert committed(got) == ["w0", "w1", "w2", "w3"] and got[-1]["type"] == "end"
    assert ws.close_code == 1007


async def test_item6_messages_before_start_do_not_extend_the_wait_for_start(make_server):
    server = await make_server(ServerSettings(idle_timeout_s=0.4, start_timeout_s=1.0))
    t0 = time.monotonic()
    got = []
    async with connect(server.url + "/v1/stream") as ws:
        try:
            for _ in range(20):  # a keepalive every 0.2 s, well inside idle_timeout_s, for 4 s
                await ws.send('{"type":"keepalive"}')
                try:
                    while True:
                        got.append(json.loads(await asyncio.wait_for(ws.recv(), 0.2)))
                except TimeoutError:
                    pass
        except ConnectionClosed:
            pass
    elapsed = time.monotonic() - t0
    codes = [m["code"] for m in got if m["type"] == "error"]
    assert codes[-1] == "start_timeout" and set(codes[:-1]) <= {"unknown_type"}
    err = [m for m in got if m["type"] == "error"][-1]
    assert "start_timeout_s" in err["message"] and "1 s" in err["message"] and err["fatal"]
    assert ws.close_code == 1008 and elapsed < 2.5


async def test_item6_a_session_that_started_is_not_bound_by_start_timeout(make_server):
    server = await make_server(ServerSettings(start_timeout_s=0.3))
    async with connect(server.url + "/v1/stream") as ws:
        await ws.send(json.dumps(START))
        assert json.loads(await ws.recv())["type"] == "ready"
        await asyncio.sleep(0.6)
        await ws.send(PCM_1S)
        await ws.send('{"type":"stop"}')
        got = [json.loads(m) async for m in ws]
    assert committed(got) == ["w0", "w1"] and got[-1]["type"] == "end" and ws.close_code == 1000


class SlowModel(PolicyCheckingModel):
    """Each model step takes 50 ms (in the scheduler's worker thread), so a drain takes a while."""

    def step(self, streams):
        time.sleep(0.05)
        return super().step(streams)


async def test_item7_while_draining_healthz_is_503_and_new_clients_get_shutting_down(server_transport):
    server = server_class(server_transport)(SlowModel(), settings=ServerSettings(model_name="counting"), port=0)
    await server.start()
    try:
        live = await connect(server.url + "/v1/stream")
        await live.send(json.dumps(START))
        for _ in range(4):
            await live.send(PCM_1S)  # 4 s of audio at 200 ms per 50 ms step: about 1 s of work
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(server.stop())
        await asyncio.sleep(0.1)
        assert not stopping.done()
        status, body = await http_get(f"http://127.0.0.1:{server.port}/healthz")
        assert status == 503 and json.loads(body)["status"] == "draining"
        got, code, _ = await exchange(server)  # refused on connecting, before any message
        assert got[0]["code"] == "shutting_down" and code == 1001
        msgs = [json.loads(m) async for m in live]
        assert committed(msgs) == [f"w{i}" for i in range(8)] and msgs[-1]["type"] == "end"
        assert live.close_code == 1001
        await stopping
    finally:
        await server.stop()


async def _half_handshake(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n")  # and then nothing: a trickling client
    await writer.drain()
    return reader, writer


async def test_item9_handshakes_in_progress_are_bounded_and_the_excess_gets_503(make_server):
    server = await make_server(ServerSettings(model_name="counting", max_handshakes=3))
    held = [await _half_handshake(server.port) for _ in range(3)]
    await asyncio.sleep(0.1)
    reader, writer = await _half_handshake(server.port)
    answer = await asyncio.wait_for(reader.read(), 2.0)  # answered and closed at once
    assert answer.startswith(b"HTTP/1.1 503") and b"max_handshakes" in answer
    writer.close()
    assert server.handshakes.refused == 1
    for _, w in held:  # the slots free as soon as those connections go
        w.close()
    await asyncio.sleep(0.1)
    got, code, _ = await exchange(server, json.dumps(START), '{"type":"stop"}')
    assert got[-1]["type"] == "end" and code == 1000 and server.handshakes.open == 0


def later_input_refused(errors: list[dict]) -> bool:
    """The audio and stop sent after a fatal error are answered, not fatal (the session is ending)."""
    return {e["code"] for e in errors} <= {"session_closed", "already_stopped"} and not any(e["fatal"] for e in errors)


async def oversize_exchange(server, big) -> tuple[list[dict], int]:
    """Two seconds of audio, then ``big`` (bytes, str, or a list of fragments), then more audio and
    stop; returns every message the server sent and its close code."""
    got = []
    async with connect(server.url + "/v1/stream", max_size=None) as ws:
        await ws.send(json.dumps(START))
        await ws.send(PCM_1S[:16000])
        await ws.send(PCM_1S[16000:])
        await ws.send(PCM_1S)
        await ws.send(big)
        try:
            await ws.send(PCM_1S[:8000])
            await ws.send('{"type":"stop"}')
            async for raw in ws:
                got.append(json.loads(raw))
        except ConnectionClosed:
            pass
    return got, ws.close_code


async def test_item5_a_frame_far_over_max_message_bytes_is_answered_by_the_protocol(make_server):
    server = await make_server(ServerSettings(max_message_bytes=40_000))
    for big in (b"\0" * 100_000, b"\0" * 8_000_000, "x" * 100_000):  # 2.5x, 200x (binary), text
        got, close_code = await oversize_exchange(server, big)
        errors = [m for m in got if m["type"] == "error"]
        assert errors[0]["code"] == "message_too_big" and errors[0]["fatal"] and later_input_refused(errors[1:])
        assert f"{len(big)} bytes" in errors[0]["message"] and "40000 bytes" in errors[0]["message"]
        assert "max_message_bytes" in errors[0]["message"]
        assert committed(got) == ["w0", "w1", "w2", "w3"] and got[-1]["type"] == "end" and close_code == 1009


async def test_item5_a_fragmented_message_crossing_the_limit_is_answered_and_the_rest_skipped(make_server):
    server = await make_server(ServerSettings(max_message_bytes=40_000))
    fragments = [b"\0" * 30_000, b"\0" * 30_000, b"\0" * 500_000, b"", b"\0" * 10]  # over at the 2nd
    got, close_code = await oversize_exchange(server, fragments)
    errors = [m for m in got if m["type"] == "error"]
    assert errors[0]["code"] == "message_too_big" and "60000 bytes" in errors[0]["message"]
    assert later_input_refused(errors[1:])
    assert committed(got) == ["w0", "w1", "w2", "w3"] and got[-1]["type"] == "end" and close_code == 1009


async def test_item5_a_message_just_under_the_limit_in_fragments_is_audio_as_usual(make_server):
    server = await make_server(ServerSettings(max_message_bytes=40_000))
    async with connect(server.url + "/v1/stream") as ws:
        await ws.send(json.dumps(START))
        await ws.send([PCM_1S[:16000], PCM_1S[16000:]])  # one message of 32000 bytes in two fragments
        await ws.send('{"type":"stop"}')
        got = [json.loads(m) async for m in ws]
    assert committed(got) == ["w0", "w1"] and ws.close_code == 1000
