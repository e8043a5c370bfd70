"""/v1/dialogue over a real socket on both transports, with the stand-in agent: a spoken turn is
answered (agent_turn_start before the first binary frame, the answer's audio as pcm_s16le frames,
agent_turn_end), stop ends with end and 1000; a server without an agent refuses naming why."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect

from streamrt.clients.dialogue_client import converse
from streamrt.server.settings import ServerSettings
from tests.streamrt.server.dialogue_helpers import ToneAgent, tone_piece
from tests.streamrt.server.server_helpers import PolicyCheckingModel, server_class


def _speech(seconds: float) -> np.ndarray:
    return (0.5 * np.sin(np.arange(int(16000 * seconds)) / 3.0)).astype(np.float32)


@pytest.mark.parametrize("transport", ["asgi", "websockets"])
async def test_a_spoken_turn_is_answered_over_the_socket(transport):
    agent = ToneAgent(pause_ms=300, answer_ms=500)
    server = server_class(transport)(PolicyCheckingModel(), settings=ServerSettings(model_name="counting"),
                                     port=0, agent=agent)
    await server.start()
    try:
        result = await converse(server.url, [_speech(0.6)], settle_s=0.2, answer_timeout_s=5.0)
    finally:
        await server.stop()
    kinds = [m["type"] for _, m in result.messages]
    assert kinds[0] == "ready" and result.ready["output_encoding"] == "pcm_s16le"
    assert kinds[1:] == ["user_commit", "agent_turn_start", "agent_text", "agent_turn_end", "end"]
    (turn,) = result.turns
    assert turn.text == "Hello there." and len(turn.audio) == 2 * 24000 // 2  # 500 ms at 24 kHz
    assert 0.15 <= turn.latency_s < 1.5  # after 300 ms of silence (the client sends a chunk at its start)
    assert result.close_code == 1000 and result.end["summary"] == {"turns": 1} and result.stray_audio_bytes == 0
    assert server.stats.sessions_started == 1 and server.stats.sessions_ended == 1


@pytest.mark.parametrize("transport", ["asgi", "websockets"])
async def test_agent_pause_and_resume_go_over_the_socket_and_the_client_plays_each_piece_once(transport):
    agent = ToneAgent(answer_ms=1000)
    server = server_class(transport)(PolicyCheckingModel(), settings=ServerSettings(model_name="counting"),
                                  port=0, agent=agent)

    async def barge_in_then_backchannel() -> None:
        while not agent.sessions:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.35)  # into the greeting's playback, with ~200 ms more held by the client
        agent.sessions[0].pause()
        await asyncio.sleep(0.3)
        agent.sessions[0].resume()

    await server.start()
    try:
        task = asyncio.create_task(barge_in_then_backchannel())
        result = await converse(server.url, [np.zeros(16000, np.float32)], start={"greeting": "Hi there."},
                                settle_s=0.2, answer_timeout_s=5.0)
        await task
    finally:
        await server.stop()
    kinds = [m["type"] for _, m in result.messages]
    assert kinds == ["ready", "agent_turn_start", "agent_text", "agent_pause", "agent_resume", "agent_turn_end", "end"]
    (pause,), (resume,) = result.of_type("agent_pause"), result.of_type("agent_resume")
    assert set(pause) == set(resume) == {"type", "turn", "position_ms", "media_ms"}
    assert pause["turn"] == resume["turn"] == 1 and 100 <= pause["position_ms"] <= 900  # mid-answer
    assert resume["position_ms"] == 100 * (pause["position_ms"] // 100)
    # the client dropped what it held at the pause and played the pieces sent again in place: each
    # 100 ms piece of the answer once, in order
    (turn,) = result.turns
    assert turn.pauses == [pause["position_ms"]]
    whole = np.concatenate([tone_piece(k) for k in range(10)])
    assert len(turn.samples()) == len(whole) and np.abs(turn.samples() - whole).max() < 1e-4
    assert result.close_code == 1000


async def test_a_server_without_an_agent_refuses_naming_why():
    server = server_class("asgi")(PolicyCheckingModel(), settings=ServerSettings(model_name="counting"), port=0)
    await server.start()
    try:
        async with connect(f"{server.url}/v1/dialogue") as ws:
            err = json.loads(await ws.recv())
            await ws.wait_closed()
    finally:
        await server.stop()
    assert err["code"] == "dialogue_unavailable" and "no voice agent" in err["message"]
    assert ws.close_code == 1008


async def test_webrtc_dialogue_the_agents_voice_comes_back_as_a_track(tmp_path):
    pytest.importorskip("aiortc")
    import soundfile as sf

    from streamrt.clients.webrtc_client import talk_webrtc

    wav = tmp_path / "question.wav"
    t = np.arange(48000) / 48000
    sf.write(wav, np.concatenate([0.4 * np.sin(2 * np.pi * 220 * t), np.zeros(48000)]).astype(np.float32), 48000)
    server = server_class("asgi")(PolicyCheckingModel(), settings=ServerSettings(model_name="counting"), port=0,
                                  agent=ToneAgent(pause_ms=300, answer_ms=500))
    await server.start()
    try:
        result, voice = await talk_webrtc(server.url, wav, end_timeout_s=10)
    finally:
        await server.stop()
    kinds = [m["type"] for m in result.messages]
    assert kinds[0] == "ready" and result.ready["output_sample_rate"] == 24000
    assert kinds[1:] == ["user_commit", "agent_turn_start", "agent_text", "agent_turn_end", "end"]
    # the 500 ms answer tone (440 Hz) is heard on the track, through Opus; silence around it
    window = 4800
    rms = [float(np.sqrt(np.mean(voice[i:i + window] ** 2))) for i in range(0, len(voice) - window, window)]
    loud = sum(r > 0.1 for r in rms)
    assert 3 <= loud <= 7, rms  # ~5 windows of 100 ms
    assert result.close_code == 1000


async def test_a_session_with_new_output_is_ticked_at_once_not_at_the_next_tick():
    import asyncio
    import time

    from streamrt.server.dialogue_bridge import DialogueBridge
    from streamrt.server.dialogue_protocol import DialogueProtocol
    from streamrt.server.metrics import ServerStats

    agent = ToneAgent(answer_ms=100)
    settings = ServerSettings(dialogue_tick_ms=5000.0)  # ticks alone would take 5 s
    updated = asyncio.Event()
    proto = DialogueProtocol(agent, None, settings, on_update=updated.set)
    sent: list = []

    async def send(msg) -> None:
        sent.append((time.monotonic(), msg))

    async def close(code, reason) -> None:
        pass

    bridge = DialogueBridge(proto, settings, ServerStats(), send, send, close, updated=updated)
    bridge.start()
    proto.receive_text(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}))
    bridge.after_input()
    await asyncio.sleep(0.1)
    session = agent.sessions[0]
    t0 = time.monotonic()
    session._start_answer("Now.")  # output made outside any client input (as a model step does)
    asyncio.get_running_loop().call_soon(proto.on_update)
    for _ in range(50):
        await asyncio.sleep(0.01)
        if any(isinstance(m, bytes) for _, m in sent):
            break
    first_audio = min(t for t, m in sent if isinstance(m, bytes))
    assert first_audio - t0 < 0.5  # not the 5 s tick
    bridge.connection_lost()
    await bridge.wait_closed()


@pytest.mark.parametrize("cut", ["interrupted", "agent_pause"])
async def test_interrupted_goes_out_after_the_audio_before_it_and_drops_what_the_link_holds(cut):
    import asyncio

    from streamrt.server.dialogue_bridge import DialogueBridge
    from streamrt.server.dialogue_protocol import DialogueProtocol
    from streamrt.server.metrics import ServerStats

    agent = ToneAgent(answer_ms=2000)
    settings = ServerSettings(dialogue_tick_ms=10.0)
    proto = DialogueProtocol(agent, None, settings)
    log: list = []  # what the link saw, in order: ("audio", n), ("json", type), ("drop",)

    async def send_text(text: str) -> None:
        log.append(("json", json.loads(text)))

    async def send_bytes(data: bytes) -> None:
        log.append(("audio", len(data)))

    async def close(code, reason) -> None:
        log.append(("close", code))

    bridge = DialogueBridge(proto, settings, ServerStats(), send_text, send_bytes, close,
                            drop_audio=lambda: log.append(("drop", None)))
    bridge.start()
    proto.receive_text(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "greeting": "Hi."}))
    bridge.after_input()
    await asyncio.sleep(0.25)  # the greeting's first frames go out, paced
    if cut == "interrupted":
        agent.sessions[0].interrupt("Hi")
    else:  # the user may be barging in: the WebRTC track drops what it holds too
        agent.sessions[0].pause()
    await asyncio.sleep(0.2)
    proto.receive_text('{"type": "stop"}')
    bridge.after_input()
    await asyncio.wait_for(bridge.wait_closed(), 5)
    kinds = [k if k != "json" else v["type"] for k, v in log]
    at = kinds.index(cut)
    assert "audio" in kinds[:at] and kinds[at + 1] == "drop"  # dropped right after it went out
    assert "audio" not in kinds[at:]  # nothing of the interrupted (paused) turn after it
    if cut == "interrupted":
        heard = [v for k, v in log if k == "json" and v["type"] == "interrupted"][0]
        assert heard["heard_text"] == "Hi" and heard["turn"] == 1
        assert kinds[-2:] == ["end", "close"]


async def test_past_the_dialogues_the_agent_holds_a_new_one_is_refused_naming_the_limit():
    server = server_class("asgi")(PolicyCheckingModel(), settings=ServerSettings(model_name="counting"), port=0,
                                  agent=ToneAgent(max_dialogues=1))
    await server.start()
    try:
        async with connect(f"{server.url}/v1/dialogue") as first:
            await first.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}))
            assert json.loads(await first.recv())["type"] == "ready"
            async with connect(f"{server.url}/v1/dialogue") as second:
                err = json.loads(await second.recv())
                await second.wait_closed()
            assert err["code"] == "server_busy" and "1 dialogues open, the agent holds 1" in err["message"]
            assert "llm_slots" in err["message"] and second.close_code == 1013
        for _ in range(100):  # the first one leaves the server once its close is through
            if server.health()[1]["sessions"] == 0:
                break
            await asyncio.sleep(0.02)
        async with connect(f"{server.url}/v1/dialogue") as third:  # room again
            await third.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}))
            assert json.loads(await third.recv())["type"] == "ready"
    finally:
        await server.stop()
