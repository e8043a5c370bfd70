"""/v1/dialogue over a real socket on both transports, with the stand-in agent: a spoken turn is
answered (agent_turn_start before the first binary frame, the answer's audio as pcm_s16le frames,
agent_turn_end), stop ends with end and 1000; a server without an agent refuses naming why."""

from __future__ import annotations

import json

import numpy as np
import pytest
from websockets.asyncio.client import connect

from streamrt.clients.dialogue_client import converse
from streamrt.server.settings import ServerSettings
from tests.streamrt.server.dialogue_helpers import ToneAgent
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
    assert result.close_code == 1000 and result.end["summary"] == {"turns": 1}
    assert server.stats.sessions_started == 1 and server.stats.sessions_ended == 1


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
