"""The voice-agent page end to end: headless Chromium with a fake microphone (a WAV file: speech,
then silence) opens /agent.html, streams the echo-cancelled microphone over /v1/dialogue, plays the
agent's answer (stopped on ``agent_pause``, played again from ``agent_resume``'s position) and shows
both sides with the answer's latency. With the camera on, a fake camera made from the animated
astronaut photo (a Y4M file: her mouth still, then talking, from ``streamrt.bench.talking_face``: the
detector real, the truth known) feeds the real FaceMesh through the real dialogue session, and the
lip scores reach the page's meter. Driven over the DevTools protocol."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect

from streamrt.server.settings import ServerSettings
from tests.streamrt.server.dialogue_helpers import ToneAgent
from tests.streamrt.server.server_helpers import PolicyCheckingModel, server_class
from tests.streamrt.server.test_server_browser import CHROMIUM, chromium_command, devtools_page_socket, evaluate

pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")]


async def run_page(server, wav: Path, profile: Path, timeout_s: float = 60.0, query: str = "turns=1",
                   camera: Path | None = None) -> tuple[dict, str]:
    """Open the agent page on ``server`` with ``wav`` as the microphone (and ``camera``, a Y4M file,
    as the camera) until it stops (after the agent's first answer, by default); return the page's
    state and its transcript text."""
    url = f"http://127.0.0.1:{server.port}/agent.html?autostart=1&{query}"
    cmd = chromium_command(url, profile, wav)
    if camera is not None:
        cmd.insert(-2, f"--use-file-for-fake-video-capture={camera}")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with connect(await devtools_page_socket(profile), max_size=None) as cdp:
            state = None
            for i in range(int(timeout_s * 10)):
                state = json.loads(await evaluate(cdp, "JSON.stringify(window.streamrtAgent || null)", i + 1) or "null")
                if state and state["closeCode"] is not None:
                    break
                await asyncio.sleep(0.1)
            shown = await evaluate(cdp, "document.getElementById('transcript').innerText", 100_000)
            if camera is not None:
                meter = await evaluate(cdp, "document.getElementById('lipstate').textContent", 100_001)
                width = await evaluate(cdp, "document.getElementById('preview').videoWidth", 100_002)
                state = {**state, "meter": meter, "previewWidth": width}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return state, shown


async def test_agent_page_plays_the_answer_and_shows_both_sides(tmp_path):
    wav = tmp_path / "speech.wav"
    t = np.arange(48000) / 48000
    sf.write(wav, np.concatenate([0.3 * np.sin(2 * np.pi * 220 * t), np.zeros(48000 * 6)]).astype(np.float32),
             48000, subtype="PCM_16")
    agent = ToneAgent(pause_ms=300, answer_ms=1500)
    server = server_class("asgi")(PolicyCheckingModel(), settings=ServerSettings(model_name="counting"), port=0,
                                  agent=agent)

    async def backchannel() -> float:  # into the answer, the user speaks and it goes on
        while not agent.sessions or agent.sessions[0].turn < 1:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        position = agent.sessions[0].pause()
        await asyncio.sleep(0.3)
        agent.sessions[0].resume()
        return position

    await server.start()
    try:
        task = asyncio.create_task(backchannel())
        state, shown = await run_page(server, wav, tmp_path / "profile")
        paused_at = await task
    finally:
        await server.stop()
    assert state is not None and state["ready"]["output_encoding"] == "pcm_s16le" and not state["errors"], state
    assert state["end"] is not None and state["closeCode"] == 1000, state
    (turn,) = state["turns"]
    assert turn["text"] == "Hello there." and 200 < turn["latencyMs"] < 2000
    # agent_pause stopped it, agent_resume played it again from the piece paused in: 1500 ms as played
    assert turn["pauses"] == [round(paused_at, 1)] and turn["audioMs"] == 1500
    assert re.search(r"You:spoke \d\.\d s", shown) and "Agent:Hello there." in shown  # ~1 s of tone, as chunks fall
    assert "ms after you stopped" in shown


async def test_agent_page_camera_preview_and_lip_meter_get_the_agents_lip_scores(tmp_path):
    from streamrt.bench.talking_face import astronaut_face, write_y4m
    from streamrt.tasks.lips import LipActivityModel
    from tests.streamrt.server.dialogue_helpers import stand_in_agent
    from tests.streamrt.video_helpers import assert_lips_follow_the_camera_file, face_mesh

    mesh = face_mesh()
    clip = astronaut_face(mesh).render(((0, 3000, "still"), (3000, 6000, "talk")), 15)
    y4m = tmp_path / "face.y4m"
    write_y4m(y4m, [rgb for _, rgb, _ in clip], 15)
    wav = tmp_path / "silence.wav"
    sf.write(wav, np.zeros(48000 * 8, np.float32), 48000, subtype="PCM_16")
    lips = LipActivityModel(mesh)
    asr, agent = stand_in_agent(lips)
    server = server_class("asgi")(asr, settings=ServerSettings(model_name="counting"), port=0, agent=agent,
                                  video_model=lips, clock=agent.clock)
    await server.start()
    try:
        state, _ = await run_page(server, wav, tmp_path / "profile", query="seconds=5.6&video=1", camera=y4m)
    finally:
        await server.stop()
    assert state is not None and state["ready"]["video"] is True and not state["errors"], state
    assert state["end"] is not None and state["closeCode"] == 1000 and state["framesSent"] >= 40, state["framesSent"]
    assert state["previewWidth"] == 320 and state["meter"].split()[0] in ("active", "still", "unknown")
    assert_lips_follow_the_camera_file(state["lips"], state["framesSent"])
