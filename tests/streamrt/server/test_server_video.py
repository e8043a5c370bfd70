"""Video on the captioning protocol: ``video`` messages (base64 JPEG + time_ms on the audio's media
clock) into the session's lip-activity stream, ``lips`` messages out; bad frames get clear,
non-fatal errors naming the limit. Sans-I/O tests use a scripted landmarker; the socket test runs
the real FaceMesh on the animated astronaut photo (its mouth warped open and shut on a known
schedule) and skips, naming the `video` extra, without it."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from streamrt.clock import ManualClock
from streamrt.server.protocol import ServerProtocol
from streamrt.server.settings import ServerSettings
from streamrt.tasks.lips import LipActivityModel
from streamrt.testing import CountingModel
from tests.streamrt.video_helpers import ScriptedLandmarker, face_mesh, scripted_frame

START = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1}


def jpeg(rgb: np.ndarray, quality: int = 95) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode()


def video_msg(rgb, t, **kw) -> str:
    return json.dumps({"type": "video", "time_ms": t, "jpeg": jpeg(rgb), **kw})


class Harness:
    """A protocol on the counting model with a lip-activity model beside it, stepped by hand."""

    def __init__(self, settings=ServerSettings(), video=True):
        self.model = CountingModel()
        self.lips = LipActivityModel(ScriptedLandmarker()) if video else None
        self.proto = ServerProtocol(self.model, ManualClock(), settings, video_model=self.lips)

    def send(self, *texts) -> list[dict]:
        for t in texts:
            self.proto.receive_text(t)
        s = self.proto.session
        if s is not None:
            s.run_until_blocked(self.model)
            if s.video is not None:
                s.video.run_until_blocked(self.lips)
            self.proto.collect()
        return self.proto.data_to_send()


def test_frames_in_lip_activity_out_on_the_audio_clock():
    h = Harness()
    ready = h.send(json.dumps({**START, "video": True}))[0]
    assert ready["type"] == "ready" and ready["video"] is True and ready["limits"]["max_video_frame_pixels"] == 1280 * 720
    out = []
    for i in range(12):  # lips moving every other frame at 25 fps
        h.proto.receive_binary(np.zeros(640, np.int16).tobytes())  # 40 ms of audio per frame
        out += h.send(video_msg(scripted_frame(0.2 if i % 2 else 0.05), 40.0 * i))
    frames = [f for m in out if m["type"] == "lips" for f in m["frames"]]
    assert [f["time_ms"] for f in frames] == [40.0 * i for i in range(12)]
    assert frames[0]["state"] == "unknown" and all(f["state"] == "active" for f in frames[1:])
    assert frames[3]["opening"] == pytest.approx(0.2, abs=0.002)
    end = h.send(json.dumps({"type": "stop"}))
    assert end[-1]["type"] == "end" and end[-1]["summary"]["video_frames"] == 12
    assert h.proto.session.video.ended and h.lips.landmarker.open_tracks == 0


def test_bad_frames_get_clear_errors_and_the_session_goes_on():
    h = Harness(ServerSettings(max_video_frame_pixels=64 * 48))
    h.send(json.dumps({**START, "video": True}))
    small = scripted_frame(0.1)
    cases = {
        "bad base64": json.dumps({"type": "video", "time_ms": 0, "jpeg": "%%%"}),
        "png": json.dumps({"type": "video", "time_ms": 0, "jpeg": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 40).decode()}),
        "no time": json.dumps({"type": "video", "jpeg": jpeg(small)}),
        "negative time": video_msg(small, -5),
        "unknown field": video_msg(small, 0, fps=30),
        "too big": video_msg(np.zeros((49, 64, 3), np.uint8), 0),
    }
    got = {name: h.send(text) for name, text in cases.items()}
    assert all(len(m) == 1 and m[0]["type"] == "error" and not m[0]["fatal"] for m in got.values()), got
    assert {n: m[0]["code"] for n, m in got.items()} == {
        "bad base64": "bad_frame", "png": "bad_frame", "no time": "bad_frame", "negative time": "bad_frame",
        "unknown field": "bad_frame", "too big": "frame_too_big"}
    assert got["too big"][0]["message"] == (
        "video frame of 64x49 (frame dropped): 3136 pixels is over the limit of 3072 pixels "
        "(setting max_video_frame_pixels)")
    assert "time_ms" in got["no time"][0]["message"] and "'fps'" in got["unknown field"][0]["message"]
    ok = h.send(video_msg(small, 0))
    assert ok[0]["type"] == "lips" and h.proto.state == "streaming"


def test_video_needs_a_video_start_and_a_server_that_scores_video():
    h = Harness()
    h.send(json.dumps(START))
    off = h.send(video_msg(scripted_frame(0.1), 0))
    assert [(m["code"], m["fatal"]) for m in off] == [("video_off", False)]
    early = Harness()
    assert [(m["code"], m["fatal"]) for m in early.send(video_msg(scripted_frame(0.1), 0))] == [("not_started", True)]
    bare = Harness(video=False)
    refused = bare.send(json.dumps({**START, "video": True}))
    assert [(m["code"], m["fatal"]) for m in refused] == [("video_unavailable", True)] and "--video" in refused[0]["message"]
    assert Harness().send(json.dumps({**START, "video": "yes"}))[0]["code"] == "bad_start"


async def test_real_face_mesh_over_a_websocket_follows_the_animated_lips():
    """Audio and JPEG frames of the animated photo over a real socket, through the scheduler, to
    lip-activity messages: still before 2 s, active while the lips move (2-4.5 s), unknown on
    frames without a face."""
    from websockets.asyncio.client import connect

    from streamrt.bench.talking_face import astronaut_face
    from streamrt.server.ws import StreamServer

    mesh = face_mesh()
    face = astronaut_face(mesh)
    clip = face.render(((0, 2000, "still"), (2000, 4500, "talk"), (4500, 5000, "no_face")), 15)
    server = StreamServer(CountingModel(), video_model=LipActivityModel(mesh), port=0)
    await server.start()
    try:
        got = []
        async with connect(server.url + "/v1/stream") as ws:
            await ws.send(json.dumps({**START, "video": True}))
            for t, rgb, _ in clip:
                await ws.send(np.zeros(int(16 * 1000 / 15), np.int16).tobytes())
                await ws.send(json.dumps({"type": "video", "time_ms": t, "jpeg": jpeg(rgb, 85)}))
                await asyncio.sleep(0.005)
            async with asyncio.timeout(20):  # the last frame's score (lips still waiting at stop are not sent)
                while not any(m["type"] == "lips" and m["frames"][-1]["time_ms"] == round(clip[-1][0], 1) for m in got):
                    got.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "stop"}))
            async for raw in ws:
                got.append(json.loads(raw))
    finally:
        await server.stop()
    frames = {f["time_ms"]: f["state"] for m in got if m["type"] == "lips" for f in m["frames"]}
    truth = {round(t, 1): x for t, _, x in clip}
    # frames are dropped when the model falls max_pending_frames behind (a busy machine)
    assert len(frames) >= 0.6 * len(clip)
    still = [frames[t] for t in frames if truth[t] is False and t > 100]
    talk = [frames[t] for t in frames if truth[t] is True and t >= 2300]
    gone = [frames[t] for t in frames if truth[t] is None]
    assert still.count("still") >= 0.95 * len(still), still
    assert talk.count("active") >= 0.85 * len(talk), talk
    assert gone and set(gone) == {"unknown"}
    assert got[-1]["type"] == "end"


async def test_webrtc_camera_track_gives_lip_activity_on_the_data_channel(tmp_path):
    """The animated photo as a WebRTC camera track (VP8 through aiortc) beside an audio track:
    lip activity comes back on the data channel, stamped on the audio's clock."""
    pytest.importorskip("aiortc")
    import soundfile as sf

    from streamrt.bench.talking_face import astronaut_face
    from streamrt.clients.webrtc_client import FramesTrack, stream_file_webrtc
    from streamrt.server.ws import StreamServer

    mesh = face_mesh()
    face = astronaut_face(mesh)
    clip = face.render(((0, 1500, "still"), (1500, 3500, "talk")), 15)
    wav = tmp_path / "silence.wav"
    sf.write(wav, np.zeros(48000 * 4, np.float32), 48000, subtype="PCM_16")
    server = StreamServer(CountingModel(), video_model=LipActivityModel(mesh), port=0)
    await server.start()
    try:
        res = await stream_file_webrtc(server.url, wav, options={"video": True},
                                       video=FramesTrack([(t, rgb) for t, rgb, _ in clip]))
    finally:
        await server.stop()
    assert res.ready["video"] is True and res.end is not None
    frames = [f for m in res.messages if m["type"] == "lips" for f in m["frames"]]
    assert len(frames) >= 0.6 * len(clip)  # frames the connection and the model did not drop
    times = [f["time_ms"] for f in frames]
    assert times == sorted(times) and 0 <= times[0] < 1000 and times[-1] < 4500
    first = times[0]  # the clip's own times, shifted to the audio's clock at the first frame
    # the first half second is left out: VP8 starts at a low bitrate and the lips' picture sharpens
    # as it ramps up, which moves the landmarks as much as a small movement of the lips would
    still = [f["state"] for f in frames if 600 < f["time_ms"] - first < 1400]
    talk = [f["state"] for f in frames if 1800 < f["time_ms"] - first < 3400]
    assert still and still.count("still") >= 0.9 * len(still), still
    assert talk and talk.count("active") >= 0.8 * len(talk), talk


def test_cancelling_the_session_cancels_its_video_and_frees_the_tracker():
    h = Harness()
    h.send(json.dumps({**START, "video": True}))
    h.send(video_msg(scripted_frame(0.1), 0))
    assert h.lips.landmarker.open_tracks == 1
    h.proto.session.cancel()
    assert h.proto.session.video.ended and h.lips.landmarker.open_tracks == 0
