"""The page's camera end to end: headless Chromium with a fake camera made from the animated
astronaut photo (a Y4M file: her mouth still for 3 s, then talking for 3 s, from
``streamrt.bench.talking_face``, the detector real and the truth known) and a fake microphone opens
``/?video=1``, shows the preview, sends JPEG frames on the audio's clock, and its lip-activity meter
follows the real FaceMesh's scores. Needs Debian ``chromium`` and the `video` extra."""

from __future__ import annotations

import asyncio
import json
import subprocess

import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect

from streamrt.tasks.lips import LipActivityModel
from tests.streamrt.server.server_helpers import PolicyCheckingModel, server_class
from tests.streamrt.server.test_server_browser import CHROMIUM, chromium_command, devtools_page_socket, evaluate
from tests.streamrt.video_helpers import assert_lips_follow_the_camera_file, face_mesh

pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")]
FPS = 15


async def test_browser_camera_preview_and_lip_meter_follow_the_animated_lips(tmp_path):
    from streamrt.bench.talking_face import astronaut_face, write_y4m

    mesh = face_mesh()
    face = astronaut_face(mesh)
    clip = face.render(((0, 3000, "still"), (3000, 6000, "talk")), FPS)
    y4m = tmp_path / "face.y4m"
    write_y4m(y4m, [rgb for _, rgb, _ in clip], FPS)
    wav = tmp_path / "silence.wav"
    sf.write(wav, np.zeros(48000 * 8, np.float32), 48000, subtype="PCM_16")
    server = server_class("asgi")(PolicyCheckingModel(), video_model=LipActivityModel(mesh), port=0)
    await server.start()
    url = f"http://127.0.0.1:{server.port}/?autostart=1&seconds=5.6&video=1"
    profile = tmp_path / "profile"
    cmd = chromium_command(url, profile, wav)
    cmd.insert(-2, f"--use-file-for-fake-video-capture={y4m}")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with connect(await devtools_page_socket(profile), max_size=None) as cdp:
            state = None
            for i in range(300):  # up to 30 s
                state = json.loads(await evaluate(cdp, "JSON.stringify(window.streamrtState || null)", i + 1) or "null")
                if state and state["closeCode"] is not None:
                    break
                await asyncio.sleep(0.1)
            meter = await evaluate(cdp, "document.getElementById('lipstate').textContent", 10_000)
            preview = await evaluate(cdp, "document.getElementById('preview').videoWidth", 10_001)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        await server.stop()
    assert state is not None and state["ready"]["video"] is True and not state["errors"], state
    assert state["end"] is not None and state["framesSent"] >= 40, state["framesSent"]
    assert preview == 320 and meter.split()[0] in ("active", "still", "unknown")
    assert_lips_follow_the_camera_file(state["lips"], state["framesSent"])
