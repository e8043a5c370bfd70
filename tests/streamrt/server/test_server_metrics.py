"""Observability (issue 17, part 3): GET /metrics in Prometheus text format and one log line per
session end, on a real server with the counting model (no weights); the voice agent's dialogue
metrics (its response onset is timed over a real socket in test_server_dialogue_video.py)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import urllib.error
import urllib.request
import weakref

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from streamrt.clients.ws_client import stream_samples
from streamrt.server.metrics import ServerStats, render
from streamrt.server.settings import ServerSettings
from tests.streamrt.server.test_server_ws import START, TONE, exchange


async def get(url: str, token: str | None = None) -> tuple[int, bytes, str]:
    def run():
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers.get("Content-Type", "")

    return await asyncio.to_thread(run)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


async def test_metrics_count_the_sessions_words_errors_and_refusals_that_happened(make_server):
    server = await make_server(ServerSettings(model_name="counting", max_sessions=2))
    words = 0
    for _ in range(2):  # two whole sessions: 3 s each, 6 words each
        res = await stream_samples(server.url, TONE, speed=0, chunk_ms=100)
        words += len(res.words)
    # a third that sends an unknown message type (a non-fatal error) and ends normally
    got, close_code, _ = await exchange(server, json.dumps(START), '{"type":"ping"}', '{"type":"stop"}')
    assert close_code == 1000 and got[-1]["type"] == "end"
    # a refusal: two sessions open, max_sessions 2
    async with connect(server.url + "/v1/stream") as a, connect(server.url + "/v1/stream") as b:
        await a.send(json.dumps(START))
        await b.send(json.dumps(START))
        await a.recv(), await b.recv()
        refused, code, _ = await exchange(server)
        assert refused[0]["code"] == "server_busy" and code == 1013
        await a.send('{"type":"stop"}')
        await b.send('{"type":"stop"}')
        async for _ in a:
            pass
        async for _ in b:
            pass
    await asyncio.sleep(0.05)  # the server detaches right after sending end

    status, body, ctype = await get(f"http://127.0.0.1:{server.port}/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    m = samples(body.decode())
    assert m[("streamrt_sessions_started_total", ())] == 5
    assert m[("streamrt_sessions_ended_total", (("reason", "end"),))] == 5
    assert m[("streamrt_sessions_active", ())] == 0
    assert m[("streamrt_refusals_total", (("reason", "max_sessions"),))] == 1
    assert m[("streamrt_refusals_total", (("reason", "saturated"),))] == 0
    assert m[("streamrt_errors_total", (("code", "unknown_type"),))] == 1
    assert m[("streamrt_errors_total", (("code", "server_busy"),))] == 1
    assert words == 12 and m[("streamrt_words_committed_total", ())] == 12
    assert m[("streamrt_commit_delay_seconds_count", ())] == 12
    steps = m[("streamrt_step_seconds_count", ())]
    assert steps >= 1 and m[("streamrt_batch_size_count", ())] == steps
    assert m[("streamrt_batch_size_sum", ())] == server.scheduler.stats()["streams_stepped"]
    assert m[("streamrt_audio_seconds_total", ())] == 6.0
    assert m[("streamrt_degradation_level", ())] == 0 and m[("streamrt_saturated", ())] == 0
    assert ("streamrt_scheduler_busy_fraction", ()) in m
    assert m[("streamrt_model_info", (("model", "counting"), ("precision", ""), ("preset", "")))] == 1


async def test_a_fatal_error_ends_the_session_under_its_code(make_server):
    server = await make_server()
    got, close_code, _ = await exchange(server, json.dumps(START), b"\0" * 3200, '{"type":"start"}x')
    assert close_code == 1007 and got[-1]["type"] == "end"
    await asyncio.sleep(0.05)
    _, body, _ = await get(f"http://127.0.0.1:{server.port}/metrics")
    m = samples(body.decode())
    assert m[("streamrt_sessions_ended_total", (("reason", "not_json"),))] == 1
    assert m[("streamrt_errors_total", (("code", "not_json"),))] == 1


async def test_metrics_need_the_token_when_the_server_has_one_unless_public(make_server):
    server = await make_server(ServerSettings(auth_token="s3cret"))
    url = f"http://127.0.0.1:{server.port}/metrics"
    assert (await get(url))[0] == 401
    assert (await get(url, "wrong"))[0] == 401
    status, body, _ = await get(url, "s3cret")
    assert status == 200 and b"streamrt_sessions_started_total 0.0" in body
    assert (await get(f"http://127.0.0.1:{server.port}/healthz"))[0] == 200  # load balancers: no token
    public = await make_server(ServerSettings(auth_token="s3cret", metrics_public=True))
    assert (await get(f"http://127.0.0.1:{public.port}/metrics"))[0] == 200


def test_each_server_has_its_own_registry():
    a, b = ServerStats(), ServerStats()
    a.session_started()
    a.error("bad_start")
    ma = samples(render(a, None, None)[0].decode())
    mb = samples(render(b, None, None)[0].decode())
    assert ma[("streamrt_sessions_started_total", ())] == 1 and mb[("streamrt_sessions_started_total", ())] == 0
    assert ("streamrt_errors_total", (("code", "bad_start"),)) not in mb


async def test_one_log_line_per_session_end_with_its_figures(make_server, caplog):
    server = await make_server()
    caplog.set_level(logging.INFO, logger="streamrt.server")
    res = await stream_samples(server.url, TONE, speed=0, chunk_ms=100)
    await asyncio.sleep(0.05)
    ends = [r for r in caplog.records if r.name == "streamrt.server" and r.getMessage().startswith("session_end ")]
    assert len(ends) == 1
    line = ends[0].getMessage()
    fields = dict(kv.split("=", 1) for kv in line.split()[1:])
    assert fields["session_id"] == res.ready["session_id"] and fields["reason"] == "end"
    assert fields["close_code"] == "1000" and fields["words"] == "6" and fields["audio_s"] == "3.0"
    delays = sorted(w["media_delay_ms"] - w["end_ms"] for w in res.words)
    assert float(fields["commit_delay_p50_ms"]) == round(delays[2], 1)  # nearest rank of 6
    assert float(fields["commit_delay_p95_ms"]) == round(delays[5], 1)
    assert float(fields["duration_s"]) > 0 and float(fields["max_lag_ms"]) >= 0
    assert ends[0].session_end["words"] == 6  # the same fields, structured, for a JSON handler


async def test_the_server_keeps_nothing_of_a_session_once_it_ended(make_server):
    """Issue 17, item 10 (slow RSS growth): no per-session object outlives its session."""
    server = await make_server()
    refs = []
    for _ in range(3):
        async with connect(server.url + "/v1/stream") as ws:
            await ws.send(json.dumps(START))
            await ws.recv()  # ready: the session is in the scheduler
            await ws.send((TONE[:16000] * 32767).astype("<i2").tobytes())
            refs += [weakref.ref(s) for s in server.scheduler.sessions]
            refs += [weakref.ref(s.stream) for s in server.scheduler.sessions]
            await ws.send('{"type":"stop"}')
            async for _ in ws:
                pass
    await asyncio.sleep(0.05)
    gc.collect()
    assert len(refs) == 6 and [r() for r in refs] == [None] * 6
    assert server.scheduler.sessions == () and server.stats.connections_active == 0


def _metric(text: str, name: str) -> float:
    return float(text.split(f"\n{name} ")[1].split()[0])


async def test_dialogue_metrics_time_the_barge_in_from_the_speech_onset_to_the_agents_audio_stopping():
    """The stand-in agent greets, the user speaks over it from 1000 ms of media, the agent pauses at
    1200 ms and the turn is cut at 1500 ms: one turn, one interruption, a barge-in of 0.2 s (to the
    pause: the audio stopped there); a second barge-in without a pause counts to ``interrupted``."""
    from streamrt.server.dialogue_bridge import DialogueBridge
    from streamrt.server.dialogue_protocol import DialogueProtocol
    from streamrt.server.metrics import ServerStats, render
    from streamrt.server.settings import ServerSettings
    from tests.streamrt.server.dialogue_helpers import ToneAgent

    agent, stats = ToneAgent(answer_ms=5000), ServerStats()
    proto = DialogueProtocol(agent, None, ServerSettings(dialogue_tick_ms=10.0))

    async def send(_) -> None:
        pass

    async def close(code, reason) -> None:
        pass

    bridge = DialogueBridge(proto, ServerSettings(dialogue_tick_ms=10.0), stats, send, send, close)
    bridge.start()
    proto.receive_text(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "greeting": "Hi."}))
    bridge.after_input()
    session = agent.sessions[0]

    def media_to(ms: float) -> None:  # quiet user audio up to ms of media
        proto.receive_binary(bytes(2 * int(16 * (ms - session.received_ms))))
        bridge.after_input()

    await asyncio.sleep(0.15)
    media_to(1200.0)
    session.pause()
    media_to(1500.0)
    session.interrupt("Hi", speech_start_ms=1000.0)
    await asyncio.sleep(0.05)
    session._start_answer("Again.")
    await asyncio.sleep(0.05)
    media_to(2600.0)
    session.interrupt("", speech_start_ms=2000.0)  # no pause first: the audio stopped at interrupted
    await asyncio.sleep(0.05)
    live = render(stats, None, None)[0].decode()
    proto.receive_text('{"type": "stop"}')
    bridge.after_input()
    await asyncio.wait_for(bridge.wait_closed(), 5)
    text = render(stats, None, None)[0].decode()
    assert _metric(live, "streamrt_dialogues_active") == 1 and _metric(text, "streamrt_dialogues_active") == 0
    assert _metric(text, "streamrt_dialogue_agent_turns_total") == 2  # a greeting has no response onset
    assert _metric(text, "streamrt_dialogue_response_onset_seconds_count") == 0
    assert _metric(text, "streamrt_dialogue_interruptions_total") == 2
    assert _metric(text, "streamrt_dialogue_barge_in_seconds_count") == 2
    assert _metric(text, "streamrt_dialogue_barge_in_seconds_sum") == pytest.approx(0.2 + 0.6)
