"""The WebSocket transport on real localhost sockets, with the counting model (no weights)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamrt.clients.ws_client import stream_samples
from streamrt.server.settings import ServerSettings

START = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1}
TONE = (0.1 * np.sin(np.arange(16000 * 3) / 7.0)).astype(np.float32)  # 3 s


async def http_get(url: str) -> tuple[int, bytes]:
    def get():
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    return await asyncio.to_thread(get)


async def exchange(server, *messages, path="/v1/stream", **kw) -> tuple[list[dict], int | None, str]:
    """Send messages, then read until the server closes; returns (messages, close code, reason)."""
    got = []
    async with connect(server.url + path, **kw) as ws:
        for m in messages:
            await ws.send(m)
        try:
            async for raw in ws:
                got.append(json.loads(raw))
        except ConnectionClosed:  # closes other than 1000/1001 raise
            pass
    return got, ws.close_code, ws.close_reason


async def test_happy_path_real_socket_every_word_then_end(make_server):
    server = await make_server()
    seen = []
    res = await stream_samples(server.url, TONE, speed=0, chunk_ms=100, on_message=seen.append)
    assert res.ready["protocol"] == 1 and res.ready["settings"]["model"] == "counting"
    assert [w["text"] for w in res.words] == [f"w{i}" for i in range(6)]
    assert {"partial", "commit"} <= {m["type"] for m in seen}
    assert res.end["summary"]["units"] == 6 and res.end["source_ms"] == 3000.0
    assert res.messages[-1]["type"] == "end" and res.close_code == 1000 and not res.errors
    assert server.stats.sessions_started == 1


async def test_stop_without_audio_still_ends(make_server):
    server = await make_server()
    got, close_code, _ = await exchange(server, json.dumps(START), '{"type": "stop"}')
    assert [m["type"] for m in got] == ["ready", "end"] and got[-1]["words"] == 0 and close_code == 1000


async def test_http_endpoints(make_server):
    server = await make_server()
    base = f"http://127.0.0.1:{server.port}"
    status, body = await http_get(base + "/healthz")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok"
    # the scheduler's load: nothing stepped yet (the busy fraction is null until a 5 s window
    # has passed since the start, then 0), so no lag and no degradation
    load = health["load"]
    assert load.pop("busy_fraction") in (None, 0.0)
    assert load == {"worst_lag_ms": 0.0, "degradation_level": 0, "degradation_active": [], "saturation": None}
    status, body = await http_get(base + "/")
    assert status == 200 and b"<html" in body.lower()
    status, body = await http_get(base + "/app.js")
    assert status == 200 and b"WebSocket" in body
    status, _ = await http_get(base + "/nope")
    assert status == 404
    status, _ = await http_get(base + "/../settings.py")
    assert status == 404


@pytest.mark.parametrize(
    "messages, code, close",
    [
        (["not json"], "not_json", 1007),
        ([b"\0\0"], "not_started", 1008),
        ([json.dumps({**START, "encoding": "opus"})], "unsupported_encoding", 1008),
        ([json.dumps({**START, "sample_rate": 7})], "unsupported_sample_rate", 1008),
        ([json.dumps({**START, "policy": "magic"})], "unknown_policy", 1008),
        ([json.dumps({**START, "policy": "wait-k", "policy_options": {"x": 1}})], "bad_policy_option", 1008),
        ([json.dumps(START), b"\0" * 5000], "message_too_big", 1009),
    ],
)
async def test_fatal_bad_input_error_then_close_code(make_server, messages, code, close):
    server = await make_server(ServerSettings(max_message_bytes=4000))
    got, close_code, _ = await exchange(server, *messages)
    errors = [m for m in got if m["type"] == "error"]
    assert errors[0]["code"] == code and errors[0]["fatal"] and close_code == close
    if got[0]["type"] == "ready":  # a fatal error after start still ends the session properly
        assert got[-1]["type"] == "end"


async def test_non_fatal_bad_input_session_goes_on(make_server):
    server = await make_server(ServerSettings(max_buffered_audio_s=2.0))
    pcm = (TONE[:16000] * 32767).astype("<i2").tobytes()
    got, close_code, _ = await exchange(
        server, json.dumps(START), json.dumps(START), '{"type":"pause"}', b"\1\2\3", pcm, pcm, pcm, '{"type":"stop"}'
    )
    codes = [m["code"] for m in got if m["type"] == "error"]
    assert codes[:3] == ["already_started", "unknown_type", "partial_frame"]
    assert close_code == 1000 and got[-1]["type"] == "end" and got[-1]["source_ms"] >= 2000.0


async def test_past_max_sessions_error_and_1013(make_server):
    server = await make_server(ServerSettings(max_sessions=2))
    async with connect(server.url + "/v1/stream") as a, connect(server.url + "/v1/stream") as b:
        await a.send(json.dumps(START))
        await b.send(json.dumps(START))
        await a.recv(), await b.recv()
        got, close_code, _ = await exchange(server)
        assert got[0]["code"] == "server_busy" and "max_sessions" in got[0]["message"] and close_code == 1013
    assert server.stats.refused_busy == 1


async def test_a_saturated_machine_refuses_new_sessions_and_serves_the_open_ones(make_server):
    server = await make_server()
    reason = "the model was busy 97% of the last 5 s (limit 95%, setting saturation_busy_fraction)"
    saturated = [None]
    server._scheduler.saturation = lambda: saturated[0]  # what Scheduler.saturation reports (tests/scheduler)
    pcm = (TONE * 32767).astype("<i2").tobytes()
    async with connect(server.url + "/v1/stream") as a:
        await a.send(json.dumps(START))
        assert json.loads(await a.recv())["type"] == "ready"
        saturated[0] = reason
        got, close_code, _ = await exchange(server)  # refused on connecting, before any message
        assert got[0]["code"] == "server_busy" and reason in got[0]["message"] and close_code == 1013
        assert "refuse_when_saturated" in got[0]["message"]
        _, body = await http_get(f"http://127.0.0.1:{server.port}/healthz")
        assert json.loads(body)["load"]["saturation"] == reason
        # the session already open loses nothing
        await a.send(pcm)
        await a.send('{"type":"stop"}')
        msgs = [json.loads(m) async for m in a]
    assert [w["text"] for m in msgs if m["type"] == "commit" for w in m["words"]] == [f"w{i}" for i in range(6)]
    assert msgs[-1]["type"] == "end" and server.stats.refused_saturated == 1
    saturated[0] = None  # streams left or the host sped up: admitted again
    got, close_code, _ = await exchange(server, json.dumps(START), '{"type":"stop"}')
    assert got[-1]["type"] == "end" and close_code == 1000


async def test_refusing_on_saturation_can_be_turned_off(make_server):
    server = await make_server(ServerSettings(refuse_when_saturated=False))
    server._scheduler.saturation = lambda: "saturated"
    got, close_code, _ = await exchange(server, json.dumps(START), '{"type":"stop"}')
    assert got[-1]["type"] == "end" and close_code == 1000 and server.stats.refused_saturated == 0


async def test_bearer_token_header_or_query(make_server):
    server = await make_server(ServerSettings(auth_token="s3cret"))
    with pytest.raises(InvalidStatus) as e:
        async with connect(server.url + "/v1/stream"):
            pass
    assert e.value.response.status_code == 401
    with pytest.raises(InvalidStatus):
        async with connect(server.url + "/v1/stream?token=wrong"):
            pass
    res = await stream_samples(server.url, TONE[:8000], speed=0, token="s3cret")
    assert res.close_code == 1000
    got, close_code, _ = await exchange(server, json.dumps(START), '{"type":"stop"}', path="/v1/stream?token=s3cret")
    assert got[-1]["type"] == "end" and close_code == 1000
    status, _ = await http_get(f"http://127.0.0.1:{server.port}/healthz")
    assert status == 200  # health stays open


async def test_allowed_origins(make_server):
    server = await make_server(ServerSettings(allowed_origins=("https://ok.example",)))
    with pytest.raises(InvalidStatus) as e:
        async with connect(server.url + "/v1/stream", origin="https://evil.example"):
            pass
    assert e.value.response.status_code == 403
    got, code, _ = await exchange(server, json.dumps(START), '{"type":"stop"}', origin="https://ok.example")
    assert code == 1000


async def test_idle_client_is_ended_then_closed(make_server):
    server = await make_server(ServerSettings(idle_timeout_s=0.3))
    pcm = (TONE[:16000] * 32767).astype("<i2").tobytes()
    got, close_code, _ = await exchange(server, json.dumps(START), pcm)
    kinds = [m["type"] for m in got]
    assert got[kinds.index("error")]["code"] == "idle_timeout" and kinds[-1] == "end"
    assert [w["text"] for m in got if m["type"] == "commit" for w in m["words"]] == ["w0", "w1"]
    assert close_code == 1008


async def test_graceful_shutdown_commits_and_ends_every_live_session(make_server):
    server = await make_server()
    pcm = (TONE[:8000] * 32767).astype("<i2").tobytes()  # 0.5 s
    clients = [await connect(server.url + "/v1/stream") for _ in range(3)]
    for ws in clients:
        await ws.send(json.dumps(START))
        for _ in range(3):
            await ws.send(pcm)
    await asyncio.sleep(0.2)
    await server.stop()
    for ws in clients:
        got = [json.loads(m) async for m in ws]  # 1001 ends the iteration without raising
        assert [w["text"] for m in got if m["type"] == "commit" for w in m["words"]] == ["w0", "w1", "w2"]
        assert got[-1]["type"] == "end" and ws.close_code == 1001
    status = await asyncio.to_thread(lambda: _refused(server.port))
    assert status


def _refused(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except (urllib.error.URLError, ConnectionError):
        return True
    return False
