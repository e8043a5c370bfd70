"""Cameras in the streams benchmark (issue 20's capacity with video on): every session's frames go
the WebSocket path (base64 JPEG decoded by ``VideoIntake``) into ``Session.receive_video`` and are
scored on the same scheduler as the audio; a stream is held only when audio and video both kept up.
The figures themselves are measured by ``streamrt bench streams --video-fps``, never asserted here.

The real-detector test animates a real photo (``skimage.data.astronaut()``, its mouth warped open
and shut: ``streamrt.bench.talking_face``); the others use a scripted landmarker."""

from __future__ import annotations

import time

import numpy as np
import pytest

from streamrt.bench.streams import passes, run_streams
from streamrt.bench.streams_video import Cameras, check_video_fps, encode_jpeg
from streamrt.errors import ConfigError
from streamrt.tasks.lips import LipActivityModel, LipActivitySettings
from streamrt.testing import CountingModel
from tests.streamrt.video_helpers import ScriptedLandmarker, face_mesh, scripted_frame

SILENCE = np.zeros(16000, np.float32)


def scripted_cameras(fps: float, landmarker=None, **settings) -> Cameras:
    """A camera whose frames a ``ScriptedLandmarker`` reads as a mouth opening and shutting."""
    frames = [encode_jpeg(np.full((16, 16, 3), scripted_frame(o)[0, 0, 0], np.uint8)) for o in (0.05, 0.2, 0.1, 0.25)]
    model = LipActivityModel(landmarker or ScriptedLandmarker(), LipActivitySettings(**settings))
    return Cameras(model, frames, fps)


async def test_every_frame_is_decoded_scored_and_counted_and_the_streams_are_held():
    result = await run_streams(CountingModel(), 2, 1.0, SILENCE, cameras=scripted_cameras(20), per_stream=True)
    video = result["video"]
    assert video["frames_sent"] == video["frames_scored"] == 2 * 20
    assert video["frames_dropped"] == {"behind": 0, "late": 0, "too_fast": 0} and video["frames_refused"] == 0
    assert 0 <= video["p50_frame_to_score_ms"] <= video["p95_frame_to_score_ms"] <= video["max_frame_to_score_ms"]
    assert video["fps"] == 20 and video["frame_budget_ms"] == 200
    for row in result["per_stream"]:
        assert row["video"]["frames_scored"] == 20
        assert row["kept_realtime"] == (row["audio_kept_realtime"] and row["video"]["kept"])
    assert result["units"] == 2 * 2  # the audio is untouched: two 500 ms words per stream


class SlowLandmarker(ScriptedLandmarker):
    """Each frame's landmarks cost 80 ms of the scheduler's worker thread (a camera too many)."""

    def open(self):
        track = super().open()
        landmarks = track.landmarks

        def slow(rgb):
            time.sleep(0.08)
            return landmarks(rgb)

        track.landmarks = slow
        return track


async def test_a_stream_whose_camera_falls_behind_is_not_held_though_its_audio_kept_up():
    cams = scripted_cameras(20, SlowLandmarker(), max_pending_frames=2)
    result = await run_streams(CountingModel(), 1, 1.5, SILENCE, cameras=cams, per_stream=True)
    row = result["per_stream"][0]
    assert row["audio_kept_realtime"] and result["streams_audio_kept_realtime"] == 1
    assert row["video"]["dropped"]["behind"] > 0 and not row["video"]["kept"]
    assert not row["kept_realtime"] and result["streams_kept_realtime"] == 0
    assert not passes(result, 1e9)  # so a sweep counts it as a failure
    sent, v = result["video"]["frames_sent"], result["video"]
    assert v["frames_scored"] + v["frames_dropped"]["behind"] == sent == 30


async def test_the_real_face_mesh_scores_two_cameras_beside_the_audio():
    from streamrt.bench.streams_video import CAMERA_SCHEDULE
    from streamrt.bench.talking_face import astronaut_face

    mesh = face_mesh()
    clip = astronaut_face(mesh).render(CAMERA_SCHEDULE[:2], 15)[15:45]  # 1 s still, 1 s talk
    cams = Cameras(LipActivityModel(mesh), [encode_jpeg(rgb) for _, rgb, _ in clip], 15)
    result = await run_streams(CountingModel(), 2, 2.0, SILENCE, cameras=cams, per_stream=True)
    v = result["video"]
    assert v["frames_sent"] == 2 * 30 and v["frames_refused"] == 0
    assert v["frames_scored"] + sum(v["frames_dropped"].values()) == v["frames_sent"]
    assert v["frames_scored"] >= 0.8 * v["frames_sent"]  # 30 frames/s of FaceMesh: a loaded machine keeps up
    assert v["p95_frame_to_score_ms"] is not None and v["lips_steps"] > 0
    assert result["streams_kept_realtime"] == sum(r["audio_kept_realtime"] and r["video"]["kept"]
                                                  for r in result["per_stream"])


def test_video_fps_is_checked_against_the_lip_models_limit():
    assert check_video_fps(None) is None and check_video_fps(0) is None and check_video_fps(15) == 15.0
    for bad in (-5, 61, float("nan")):
        with pytest.raises(ConfigError, match=r"--video-fps .*max_fps \(60 frames/s\)"):
            check_video_fps(bad)


def test_cli_refuses_a_frame_rate_past_the_limit_before_loading_anything():
    import typer
    from typer.testing import CliRunner

    from streamrt.bench import streams

    app = typer.Typer()
    streams.register(app)
    app.command("noop")(lambda: None)  # a group of two commands, as under `streamrt bench`
    res = CliRunner().invoke(app, ["streams", "--model", "counting", "--video-fps", "90"])
    assert res.exit_code == 2 and "max_fps (60 frames/s)" in res.output and "got 90" in res.output


class SlowToOpen(ScriptedLandmarker):
    """Opening a stream's tracker blocks the worker for 400 ms (FaceMesh loads a graph per camera)."""

    def open(self):
        time.sleep(0.4)
        return super().open()


async def test_frames_dropped_while_the_cameras_join_are_reported_apart_and_not_judged():
    model = LipActivityModel(SlowToOpen(), LipActivitySettings(max_pending_frames=2))
    cams = Cameras(model, [encode_jpeg(np.full((16, 16, 3), 100, np.uint8))], 20, settle_s=1.0)
    result = await run_streams(CountingModel(), 1, 2.0, SILENCE, cameras=cams, per_stream=True)
    video = result["per_stream"][0]["video"]
    assert video["settling"]["dropped"] > 0 and video["dropped"]["behind"] == video["settling"]["dropped"]
    assert video["frames_scored"] + video["settling"]["dropped"] == video["frames_sent"] == 40
    assert video["kept"] and result["kept_realtime"]
    assert result["video"]["settle_s"] == 1.0 and result["video"]["settling"]["frames_dropped"] > 0
