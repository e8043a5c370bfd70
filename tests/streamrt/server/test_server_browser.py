"""The browser page end to end: headless Chromium with a fake microphone (a WAV file) opens the page
served at /, streams the audio through an AudioWorklet over the WebSocket, and shows captions.
Driven over the Chrome DevTools protocol (no selenium). Needs Debian ``chromium``."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")]


def chromium_command(url: str, profile: Path, wav: Path) -> list[str]:
    return [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required",
        "--remote-debugging-port=0", url,
    ]


async def devtools_page_socket(profile: Path, timeout_s: float = 30.0) -> str:
    """The DevTools WebSocket URL of the first page, once Chromium has written its port."""
    port_file = profile / "DevToolsActivePort"
    for _ in range(int(timeout_s / 0.1)):
        if port_file.exists() and port_file.read_text().strip():
            port = port_file.read_text().split()[0]
            targets = await asyncio.to_thread(
                lambda: json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
            )
            pages = [t for t in targets if t["type"] == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        await asyncio.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


async def evaluate(cdp, expression: str, msg_id: int):
    await cdp.send(json.dumps({"id": msg_id, "method": "Runtime.evaluate",
                               "params": {"expression": expression, "returnByValue": True}}))
    while True:
        reply = json.loads(await cdp.recv())
        if reply.get("id") == msg_id:
            return reply["result"]["result"].get("value")


@pytest.mark.parametrize("encoding", ["pcm_s16le", pytest.param("pcm_f32le", marks=pytest.mark.slow)])
async def test_browser_page_streams_the_microphone_and_shows_captions(make_server, tmp_path, encoding):
    server = await make_server()
    wav = tmp_path / "speech.wav"
    t = np.arange(48000 * 3) / 48000
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 48000, subtype="PCM_16")
    url = f"http://127.0.0.1:{server.port}/?autostart=1&seconds=2.5&encoding={encoding}"
    profile = tmp_path / "profile"
    proc = subprocess.Popen(chromium_command(url, profile, wav), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with connect(await devtools_page_socket(profile), max_size=None) as cdp:
            state = None
            for i in range(300):  # up to 30 s
                state = json.loads(await evaluate(cdp, "JSON.stringify(window.streamrtState || null)", i + 1) or "null")
                if state and state["closeCode"] is not None:
                    break
                await asyncio.sleep(0.1)
            shown = await evaluate(cdp, "document.getElementById('committed').textContent", 10_000)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert state is not None and state["ready"]["encoding"] == encoding, state
    assert state["ready"]["sample_rate"] == 16000 and not state["errors"], state
    assert state["end"] is not None and state["closeCode"] == 1000, state
    words = [w["text"] for w in state["committed"]]
    assert len(words) >= 3 and words == [f"w{i}" for i in range(len(words))]  # ~2.5 s of 500 ms words
    assert shown == " ".join(words)  # the captions are on the page
    assert state["end"]["words"] == len(words)
