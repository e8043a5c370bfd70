"""Video on the voice agent's endpoint, over real sockets: ``video`` messages on ``/v1/dialogue``
(the captioning protocol's, one decoder for both) and a WebRTC camera track reach the real
``DialogueSession`` on the audio's media clock, its lip scores come back as ``lips`` messages; bad
frames get non-fatal errors naming the problem and the limit, and the dialogue goes on; a server
with no lip model refuses ``"video": true`` naming the extra. The agent runs on stand-ins
(CountingModel ASR, EchoTextModel LLM, ToneTtsModel TTS, the real silero VAD) and the lip model is
the real rule on a scripted landmarker (each frame's first pixel says its mouth opening); the real
FaceMesh on the animated photo runs in the browser test (test_server_browser_agent.py)."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from streamrt.server.settings import ServerSettings
from streamrt.tasks.lips import LipActivityModel
from streamrt.testing import CountingModel
from tests.streamrt.dialogue.dialogue_helpers import silence, speech
from tests.streamrt.server.dialogue_helpers import ToneAgent, stand_in_agent
from tests.streamrt.server.server_helpers import server_class
from tests.streamrt.video_helpers import ScriptedLandmarker

START = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1}
MOVING = (0.02, 0.06, 0.12, 0.06)  # the mouth opening, frame by frame: opening and shutting


def frame(opening: float, w: int = 16, h: int = 16) -> np.ndarray:
    """A picture the scripted landmarker reads as a face with this mouth opening."""
    return np.full((h, w, 3), round(opening * 1000), np.uint8)


def jpeg(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    return base64.b64encode(buf.getvalue()).decode()


def pcm(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


async def _agent_server(**settings):
    lips = LipActivityModel(ScriptedLandmarker())
    asr, agent = stand_in_agent(lips)
    server = server_class("asgi")(asr, settings=ServerSettings(model_name="counting", **settings), port=0, agent=agent,
                                  video_model=lips, clock=agent.clock)
    await server.start()
    return server


_seen: dict[int, list[str]] = {}  # message types received so far, by connection


def _answered(ws) -> bool:
    return "agent_turn_end" in _seen.get(id(ws), [])


async def _read_all(ws) -> list[dict]:
    out = []
    try:
        async with asyncio.timeout(30):
            async for raw in ws:
                if isinstance(raw, str):
                    out.append(json.loads(raw))
                    _seen.setdefault(id(ws), []).append(out[-1]["type"])
    except ConnectionClosed:  # closed with an error: what came before it is the answer
        pass
    return out


async def test_camera_frames_over_the_socket_give_lip_scores_on_the_audios_clock_and_the_turn_is_answered():
    """A spoken turn (flite) with the camera on, in real time: every frame is scored in order on the
    audio's clock (the lips move while the user speaks: active; still after), the turn is answered,
    and /metrics counts the dialogue, its turn and the response onset from the VAD's end of speech."""
    server = await _agent_server()
    said = speech("What is the capital of France?")
    spoken_ms = (300.0, 300.0 + 1000 * len(said) / 16000)
    track = np.concatenate([silence(0.3), said, silence(1.5)])

    def opening(n: int) -> float:  # of frame n: moving while the user speaks
        return MOVING[n % 4] if spoken_ms[0] <= n * 1000 / 15 <= spoken_ms[1] else 0.05

    step = 1600  # 100 ms of audio, then the frames taken with it (15 fps)
    sent_times: list[float] = []
    try:
        async with connect(f"{server.url}/v1/dialogue") as ws:
            await ws.send(json.dumps({**START, "video": True}))
            ready = json.loads(await ws.recv())
            reader = asyncio.create_task(_read_all(ws))
            i, after = 0, 0  # then silence, as a microphone sends, until the answer has played out
            while i < len(track) or (after < 5 and i < len(track) + 16000 * 10):
                after += _answered(ws)
                chunk = track[i:i + step]
                await ws.send(pcm(np.pad(chunk, (0, step - len(chunk)))))
                i += step
                while len(sent_times) * 1000 / 15 < i / 16:
                    t = round(len(sent_times) * 1000 / 15, 1)
                    await ws.send(json.dumps({"type": "video", "time_ms": t,
                                              "jpeg": jpeg(frame(opening(len(sent_times))))}))
                    sent_times.append(t)
                await asyncio.sleep(0.1)
            await ws.send(json.dumps({"type": "stop"}))
            got = await reader
        metrics = server.metrics_text()[0].decode()
    finally:
        await server.stop()
    assert ready["video"] is True and ready["limits"]["max_video_frame_pixels"] == 1280 * 720
    assert not [m for m in got if m["type"] == "error"], got
    lips = [f for m in got if m["type"] == "lips" for f in m["frames"]]
    # the model keeps the newest frames when it falls behind (max_pending_frames): most, in order
    assert len(lips) >= 0.8 * len(sent_times) and {f["time_ms"] for f in lips} <= set(sent_times)
    assert [f["time_ms"] for f in lips] == sorted(f["time_ms"] for f in lips)
    talking = [f["state"] for f in lips if spoken_ms[0] + 100 < f["time_ms"] < spoken_ms[1]]
    after = [f["state"] for f in lips if spoken_ms[1] + 500 < f["time_ms"]]  # past the rule's window
    assert talking.count("active") >= 0.9 * len(talking) and after.count("still") >= 0.9 * len(after)
    kinds = [m["type"] for m in got]
    assert "user_turn_end" in kinds and kinds.index("user_turn_end") < kinds.index("agent_turn_start")
    assert kinds[-1] == "end" and ws.close_code == 1000
    (turn_end,) = [m for m in got if m["type"] == "user_turn_end"]
    (start,) = [m for m in got if m["type"] == "agent_turn_start"]
    speech_end = turn_end["speech_end_ms"]
    assert spoken_ms[1] - 200 < speech_end < turn_end["media_ms"]
    assert "streamrt_dialogues_started_total 1.0" in metrics and "streamrt_dialogues_active 0.0" in metrics
    assert "streamrt_dialogue_agent_turns_total 1.0" in metrics
    assert "streamrt_dialogue_response_onset_seconds_count 1.0" in metrics
    onset = float(metrics.split("streamrt_dialogue_response_onset_seconds_sum ")[1].split()[0])
    assert onset == pytest.approx((start["media_ms"] - speech_end) / 1000, abs=1e-3) and 0 < onset < 3


async def test_bad_frames_get_errors_naming_the_limit_and_the_dialogue_goes_on():
    server = await _agent_server(max_video_frame_pixels=16 * 16)
    try:
        async with connect(f"{server.url}/v1/dialogue") as ws:
            await ws.send(json.dumps({**START, "video": True}))
            assert json.loads(await ws.recv())["type"] == "ready"
            for i in range(6):  # in real time (a model behind by max_pending_frames drops the oldest)
                await ws.send(pcm(silence(0.04)))
                await ws.send(json.dumps({"type": "video", "time_ms": 40.0 * i, "jpeg": jpeg(frame(MOVING[i % 4]))}))
                await asyncio.sleep(0.04)
            bad = [
                {"type": "video", "time_ms": 120.0, "jpeg": jpeg(frame(0.05))},  # back in time
                {"type": "video", "time_ms": 240.0, "jpeg": jpeg(frame(0.05, 17, 16))},  # 272 pixels
                {"type": "video", "time_ms": 240.0, "jpeg": base64.b64encode(b"\xff\xd8\xff" + b"x" * 64).decode()},
                {"type": "video", "time_ms": 240.0, "jpeg": "not base64!"},
            ]
            for m in bad:
                await ws.send(json.dumps(m))
            for i in range(6, 10):  # the session goes on: these are scored too
                await ws.send(pcm(silence(0.04)))
                await ws.send(json.dumps({"type": "video", "time_ms": 40.0 * i, "jpeg": jpeg(frame(MOVING[i % 4]))}))
                await asyncio.sleep(0.04)
            await asyncio.sleep(0.5)
            await ws.send(json.dumps({"type": "stop"}))
            got = await _read_all(ws)
    finally:
        await server.stop()
    errors = [m for m in got if m["type"] == "error"]
    assert [(e["code"], e["fatal"]) for e in errors] == [("late_frame", False), ("frame_too_big", False),
                                                         ("bad_frame", False), ("bad_frame", False)]
    assert "time_ms 120 is not after the previous frame's 200" in errors[0]["message"]
    assert errors[1]["message"] == ("video frame of 17x16 (frame dropped): 272 pixels is over the limit of 256 pixels "
                                    "(setting max_video_frame_pixels)")
    assert "JPEG" in errors[2]["message"] and "base64" in errors[3]["message"]
    assert [f["time_ms"] for m in got if m["type"] == "lips" for f in m["frames"]] == [40.0 * i for i in range(10)]
    assert got[-1]["type"] == "end" and ws.close_code == 1000


async def test_video_without_a_lip_model_before_start_or_without_a_video_start_is_refused_by_name():
    server = server_class("asgi")(CountingModel(), settings=ServerSettings(model_name="counting"), port=0,
                                  agent=ToneAgent())
    await server.start()
    video = json.dumps({"type": "video", "time_ms": 0, "jpeg": jpeg(frame(0.1))})
    try:
        async with connect(f"{server.url}/v1/dialogue") as ws:  # no lip model on this server
            await ws.send(json.dumps({**START, "video": True}))
            refused = await _read_all(ws)
        assert [(m["code"], m["fatal"]) for m in refused] == [("video_unavailable", True)] and ws.close_code == 1008
        assert "--video" in refused[0]["message"] and "`video` extra" in refused[0]["message"]
        async with connect(f"{server.url}/v1/dialogue") as ws:
            await ws.send(video)
            early = await _read_all(ws)
        assert [(m["code"], m["fatal"]) for m in early] == [("not_started", True)] and ws.close_code == 1008
        async with connect(f"{server.url}/v1/dialogue") as ws:
            await ws.send(json.dumps(START))
            await ws.send(video)
            await ws.send(json.dumps({"type": "stop"}))
            off = await _read_all(ws)
        assert [(m["code"], m["fatal"]) for m in off if m["type"] == "error"] == [("video_off", False)]
        assert off[-1]["type"] == "end" and ws.close_code == 1000
    finally:
        await server.stop()


async def test_webrtc_dialogue_takes_the_camera_track_and_sends_lip_scores_on_the_data_channel(tmp_path):
    pytest.importorskip("aiortc")
    import soundfile as sf

    from streamrt.clients.webrtc_client import FramesTrack, talk_webrtc

    wav = tmp_path / "silence.wav"
    sf.write(wav, np.zeros(48000 * 3, np.float32), 48000, subtype="PCM_16")
    frames = [(i * 1000 / 15, frame(0.05 if i < 20 else MOVING[i % 4], 64, 48)) for i in range(45)]
    server = await _agent_server()
    try:
        result, _ = await talk_webrtc(server.url, wav, start={"video": True}, video=FramesTrack(frames))
    finally:
        await server.stop()
    assert result.ready["video"] is True and result.end is not None
    assert not [m for m in result.messages if m["type"] == "error"]
    lips = [f for m in result.messages if m["type"] == "lips" for f in m["frames"]]
    assert len(lips) >= 0.6 * len(frames)
    times = [f["time_ms"] for f in lips]
    assert times == sorted(times) and 0 <= times[0] < 1000  # on the audio's clock: its first frame at the audio then
    first = times[0]
    still = [f["state"] for f in lips if 400 < f["time_ms"] - first < 1200]
    moving = [f["state"] for f in lips if 1800 < f["time_ms"] - first < 2900]
    assert still and still.count("still") >= 0.8 * len(still), still
    assert moving and moving.count("active") >= 0.8 * len(moving), moving


async def test_a_webrtc_dialogue_whose_media_stops_is_ended_after_idle_timeout_s():
    """The client's track goes quiet without a close (a tab gone, a dead link): past idle_timeout_s
    the dialogue gets ``idle_timeout`` naming the setting, ends, and the server forgets it."""
    pytest.importorskip("aiortc")
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack

    from streamrt.clients.webrtc_client import webrtc_url

    class StallingTrack(AudioStreamTrack):
        """Silence for 0.5 s, then nothing (recv never returns)."""

        sent = 0

        async def recv(self):
            self.sent += 1
            if self.sent > 25:
                await asyncio.Future()
            return await super().recv()

    server = server_class("asgi")(CountingModel(), settings=ServerSettings(model_name="counting", idle_timeout_s=1.0),
                                  port=0, agent=ToneAgent())
    await server.start()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(StallingTrack())
    channel = pc.createDataChannel("dialogue")
    got: list[dict] = []
    channel.on("message", lambda m: got.append(json.loads(m)))
    try:
        await pc.setLocalDescription(await pc.createOffer())
        async with connect(webrtc_url(server.url)) as ws:
            await ws.send(json.dumps({"type": "offer", "agent": True, "sdp": pc.localDescription.sdp, "start": {}}))
            answer = json.loads(await ws.recv())
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
            async with asyncio.timeout(15):
                await ws.wait_closed()
        for _ in range(100):
            if server.health()[1]["sessions"] == 0:
                break
            await asyncio.sleep(0.05)
        sessions = server.health()[1]["sessions"]
    finally:
        await pc.close()
        await server.stop()
    errors = [m for m in got if m["type"] == "error"]
    assert [(e["code"], e["fatal"]) for e in errors] == [("idle_timeout", True)], got
    assert "idle_timeout_s" in errors[0]["message"] and got[-1]["type"] == "end"
    assert ws.close_code == 1008 and sessions == 0
