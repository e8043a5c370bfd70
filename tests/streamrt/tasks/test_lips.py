"""The lip-activity task (``streamrt.tasks.lips``).

The rule's unit tests use a scripted landmarker (the frame says which mouth opening it shows). The
detection tests run the real MediaPipe FaceMesh on a real photo (``skimage.data.astronaut()``)
whose mouth is warped open and shut on a known schedule (``streamrt.bench.talking_face``): the
detector is real and the per-frame truth is known; they skip, naming the `video` extra, without it.
"""

import numpy as np
import pytest

from streamrt.bench.lips import detection, score_clip
from streamrt.bench.talking_face import DEFAULT_SCHEDULE
from streamrt.clock import ManualClock
from streamrt.errors import ConfigError
from streamrt.stream_session import StreamSession
from streamrt.tasks.lips import LipActivityModel, LipActivitySettings
from streamrt.types import AudioChunk, ErrorEvent, VideoFrame
from tests.streamrt.video_helpers import ScriptedLandmarker, face_mesh, scripted_frame


def run(model, frames):
    """[(time_ms, opening or None)] through one stream, one step per frame -> [LipActivity]."""
    s = model.create_stream()
    out = []
    for t, opening in frames:
        s.accept(VideoFrame(scripted_frame(opening), t))
        if s.is_ready():
            model.step([s])
        out += s.pop_result().lips
    return s, out


def test_still_lips_are_still_and_moving_lips_are_active():
    model = LipActivityModel(ScriptedLandmarker())
    still = [(t, 0.05) for t in range(0, 1000, 40)]
    talk = [(1000 + t, 0.05 if (t // 120) % 2 else 0.2) for t in range(0, 1000, 40)]
    _, out = run(model, still + talk)
    assert out[0].active is None  # one frame: no spread yet, unknown (not still)
    assert all(a.active is False and a.score < 0.01 for a in out[1:25])
    assert all(a.active for a in out[28:])  # the window holds moving lips from ~1.1 s on
    assert out[-1].score == 1.0 and out[-1].opening == pytest.approx(0.05 if (960 // 120) % 2 else 0.2, abs=1e-3)


def test_lips_held_open_are_still():
    _, out = run(LipActivityModel(ScriptedLandmarker()), [(t, 0.25) for t in range(0, 1000, 33)])
    assert [a.active for a in out[1:]] == [False] * (len(out) - 1)


def test_no_face_is_unknown_not_still_and_the_face_comes_back():
    frames = [(t, 0.05) for t in range(0, 400, 40)] + [(t, None) for t in range(400, 800, 40)] + \
             [(t, 0.05) for t in range(800, 1600, 40)]
    _, out = run(LipActivityModel(ScriptedLandmarker()), frames)
    gone = [a for a in out if 400 <= a.time_ms < 800]
    assert gone and all(a.state == "unknown" and a.score is None and a.opening is None for a in gone)
    assert out[20].state == "unknown"  # the face's first frame back: alone in the window
    assert all(a.state == "still" for a in out[21:])


def test_score_is_causal_later_frames_never_change_it():
    """Scores of a prefix are the same whatever follows (the encoder reads only frames up to each)."""
    rng = np.random.default_rng(1)
    frames = [(40.0 * i, float(rng.uniform(0.02, 0.2))) for i in range(60)]
    _, full = run(LipActivityModel(ScriptedLandmarker()), frames)
    _, head = run(LipActivityModel(ScriptedLandmarker()), frames[:30])
    assert [a.score for a in full[:30]] == [a.score for a in head]


def test_late_too_fast_and_behind_frames_are_dropped_and_counted():
    model = LipActivityModel(ScriptedLandmarker(), LipActivitySettings(max_fps=30, max_pending_frames=3))
    s = model.create_stream()
    for t in (0, 40, 30, 40, 50, 80, 120, 160, 200):  # 30 and 40 late; 50 under 1000/30 ms after 40
        s.accept(VideoFrame(scripted_frame(0.1), t))
    assert s.dropped == {"late": 2, "too_fast": 1, "behind": 3}  # 0, 40, 80 dropped for the newest three
    model.step([s])
    assert [a.time_ms for a in s.pop_result().lips] == [120, 160, 200]


def test_varying_rate_uses_time_not_frame_counts():
    """Moving lips at 5 and 30 fps with uneven frame times, then still ones: both rates see the
    movement and the stillness (the window is in ms, so at 5 fps it holds two or three frames)."""
    for fps in (5, 30):
        rng = np.random.default_rng(fps)
        times = np.cumsum(rng.uniform(0.8, 1.2, 6 * fps) * 1000 / fps)
        frames = [(float(t), float(rng.choice([0.05, 0.2])) if t < 3000 else 0.05) for t in times]
        _, out = run(LipActivityModel(ScriptedLandmarker()), frames)
        moving = [a for a in out if 500 < a.time_ms < 3000]
        still = [a for a in out if a.time_ms > 3450]
        # random openings repeat now and then: at 5 fps two equal frames in a row look still
        assert sum(a.active is True for a in moving) >= (0.7 if fps == 5 else 0.95) * len(moving), fps
        assert all(a.active is False for a in still), fps


def test_tracker_is_per_stream_opened_at_first_step_and_closed_at_the_end():
    marks = ScriptedLandmarker()
    model = LipActivityModel(marks)
    a, b = model.create_stream(), model.create_stream()
    assert marks.open_tracks == 0
    for s in (a, b):
        s.accept(VideoFrame(scripted_frame(0.1), 0.0))
    model.step([a, b])  # one step, both sessions' frames
    assert marks.open_tracks == 2 and model.frames == 2
    a.input_finished()
    b.cancel()
    assert marks.open_tracks == 0 and a.is_done() and b.is_done()


def test_session_turns_bad_frames_into_errors_and_goes_on():
    model = LipActivityModel(ScriptedLandmarker())
    session = StreamSession(model.create_stream(), ManualClock())
    session.receive(VideoFrame(np.zeros((4, 4), np.float32), 0.0))
    session.receive(VideoFrame(np.zeros((4, 4, 2), np.uint8), 0.0))
    session.receive(VideoFrame(scripted_frame(0.1), float("nan")))
    session.receive(AudioChunk(np.zeros(160, np.float32), 16000, 0.0))
    session.receive(VideoFrame(scripted_frame(0.1), 10.0))
    session.run_until_blocked(model)
    events = session.events()
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert [e.code for e in errors] == ["bad_frame", "bad_frame", "bad_frame", "unsupported_input"]
    assert "uint8" in errors[0].message and "(4, 4, 2)" in errors[1].message
    assert [a.time_ms for e in events if not isinstance(e, ErrorEvent) for a in e.result.lips] == [10.0]


def test_settings_name_the_bad_value():
    with pytest.raises(ConfigError, match="window_ms"):
        LipActivitySettings(window_ms=0)
    with pytest.raises(ConfigError, match="min_frames"):
        LipActivitySettings(min_frames=1)
    with pytest.raises(ConfigError, match="options"):
        LipActivityModel(ScriptedLandmarker()).create_stream({"x": 1})


# ---- the real detector on the animated photo ---------------------------------------------------
@pytest.fixture(scope="module")
def real():
    from streamrt.bench.talking_face import astronaut_face

    mesh = face_mesh()
    return LipActivityModel(mesh), astronaut_face(mesh)


@pytest.mark.parametrize("fps,jitter_ms,bar", [(15, 0.0, (0.8, 0.85)), (5, 40.0, (0.65, 0.6))])
def test_real_face_mesh_follows_the_animated_lips(real, fps, jitter_ms, bar):
    """Per-frame precision and recall against the animation's schedule (talk = positive): the rule
    is late by up to its window after speech stops, so precision is the lower one."""
    model, face = real
    clip = face.render(DEFAULT_SCHEDULE, fps, jitter_ms=jitter_ms)
    got = detection(clip, score_clip(model, clip), fps)
    assert got.precision >= bar[0] and got.recall >= bar[1], got
    assert all(d is not None and d <= 700 for d in got.onset_delays_ms), got
    assert got.unknown_on_no_face == 1.0  # the coffee photo: unknown on every frame, never still
    assert got.unknown_on_face <= 0.05


def test_real_face_mesh_still_face_is_never_active(real):
    """A still face (sensor noise and a slow head sway only), closed, then held open: no active
    frame but in the window after the one movement there is (the mouth opening at 2 s)."""
    model, face = real
    clip = face.render(((0, 2000, "still"), (2000, 4000, "still_open")), 15)
    lips = score_clip(model, clip)
    window = model.settings.window_ms
    assert all(a.active is False for a in lips[1:] if not 2000 <= a.time_ms <= 2000 + window)
    assert all(a.active is True for a in lips if 2000 <= a.time_ms < 2000 + window - 70)
