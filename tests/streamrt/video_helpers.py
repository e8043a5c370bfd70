"""Shared by the video tests: the real FaceMesh (skipped, naming the extra, when it is missing), the
animated astronaut, and a scripted landmarker for the rule's unit tests.

The talking face is a real photo (``skimage.data.astronaut()``) whose mouth is warped open and shut
on a known schedule (``streamrt.bench.talking_face``): the detector is real, the truth is known."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

VIDEO_EXTRA = "the `video` extra (mediapipe==0.10.21, installed --no-deps by `make setup`) is not installed"


def face_mesh():
    if importlib.util.find_spec("mediapipe") is None:
        pytest.skip(VIDEO_EXTRA)
    if importlib.util.find_spec("skimage") is None:
        pytest.skip("scikit-image (the `dev` extra: the test photos) is not installed")
    from streamrt.errors import ModelLoadError
    from streamrt.models.faces import load_face_mesh

    try:
        return load_face_mesh()
    except ModelLoadError as e:  # a MediaPipe without the face models (a later release)
        pytest.skip(e.message)


def face_points(opening: float, *, scale: float = 100.0, angle: float = 0.0, at=(160.0, 120.0)) -> np.ndarray:
    """468 landmarks in pixels with a mouth of the given opening (inner gap / width), the eyes above
    it, the whole face scaled, rolled by ``angle`` radians and placed at ``at``."""
    rng = np.random.default_rng(7)
    p = rng.uniform(-1, 1, (468, 3))
    p[33], p[263] = (-0.5, -0.6, 0), (0.5, -0.6, 0)  # eye corners
    p[78], p[308] = (-0.25, 0.5, 0), (0.25, 0.5, 0)  # mouth corners: width 0.5
    p[13], p[14] = (0, 0.5 - 0.25 * opening, 0), (0, 0.5 + 0.25 * opening, 0)
    c, s = np.cos(angle), np.sin(angle)
    p[:, :2] = p[:, :2] @ np.array([[c, s], [-s, c]])
    return (p * scale + np.array([at[0], at[1], 0])).astype(np.float32)


class ScriptedTrack:
    """A face tracker that reads the mouth opening a frame shows from its first pixel (value/1000;
    0: no face), so tests can script openings frame by frame."""

    def __init__(self, owner):
        self.owner = owner
        self.closed = False

    def landmarks(self, rgb):
        v = int(rgb[0, 0, 0])
        return None if v == 0 else face_points(v / 1000.0)

    def close(self):
        self.closed = True
        self.owner.open_tracks -= 1


class ScriptedLandmarker:
    name = "scripted"

    def __init__(self):
        self.open_tracks = 0

    def open(self):
        self.open_tracks += 1
        return ScriptedTrack(self)


def scripted_frame(opening: float | None) -> np.ndarray:
    """A tiny frame that ``ScriptedTrack`` reads as a face with this opening (None: no face)."""
    return np.full((4, 4, 3), 0 if opening is None else max(1, round(opening * 1000)), np.uint8)


def assert_lips_follow_the_camera_file(lips: list[dict], frames_sent: int) -> None:
    """A page's ``lips`` messages from the animated-photo Y4M camera (the browser tests): most frames
    scored; the fake camera starts its file when the page opens it, a little before the first audio,
    so the first 2.5 s of media show the still mouth and 3.6-5.4 s the talking one (0.6 s of slack
    at the switch, for that offset and the rule's window)."""
    assert len(lips) >= 0.8 * frames_sent
    still = [f["state"] for f in lips if 300 < f["time_ms"] < 2500]
    talk = [f["state"] for f in lips if 3600 < f["time_ms"] < 5400]
    assert still and still.count("still") >= 0.9 * len(still), still
    assert talk and talk.count("active") >= 0.7 * len(talk), talk
