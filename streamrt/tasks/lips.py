"""Lip activity as a scheduler task: video frames in, a per-frame lip-activity score out.

    model = LipActivityModel(load_face_mesh())           # shared: the landmarker and the settings
    sched.add_model(model, name="lips")
    video = StreamSession(model.create_stream(), clock)  # one per camera
    sched.add(video, model=model)
    video.receive(VideoFrame(rgb, time_ms=1234.0))       # time on the session's media clock
    ... StepOutput.result.lips: [LipActivity(time_ms, score, active, opening), ...]

Per frame: FaceMesh landmarks (``streamrt.models.faces``) give the lip features (40 lip landmarks
in the face's own frame, and the mouth opening: inner-lip gap over mouth width). The temporal
encoder is causal and keeps its state in a preallocated ring of the last frames, written by
position: the score of a frame looks only at frames up to it.

**What the first model is, honestly:** a rule, not a trained network. The score is the standard
deviation of the mouth opening over the last ``window_ms`` of frames with a face, scaled so that
``active_std`` maps to 0.5 (``score = min(1, 0.5 * std / active_std)``); a frame is active when
the score reaches 0.5. Lips that move as in speech open and shut several times a second, so the
opening varies; a still mouth, closed or held open, does not. It cannot tell speech from chewing,
and its reaction is bounded by the window (a burst of movement keeps a frame active for up to
``window_ms`` after it). The 40 normalised lip landmarks are computed and kept for a learned
encoder to replace the rule; the rule reads only the opening.

Frames: any rate up to ``max_fps``; a frame closer than ``1000 / max_fps`` ms to the previous one
is dropped (``too_fast``), as is a frame not later than the previous one (``late``: the encoder is
causal, it cannot go back). When the model falls behind, at most ``max_pending_frames`` wait; the
oldest are dropped (``behind``): for lip activity the newest frame matters, not every frame. No face
in a frame scores ``unknown`` (``active`` None), never still; so do the first frames of a face
until ``min_frames`` with a face are in the window.

Batching: ``step`` takes the ready streams of every session at once, but FaceMesh runs one image
per call (MediaPipe's graph has no batch dimension), so the landmarks are computed one frame after
another; the rule is a few numpy operations per frame.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import ClassVar, Mapping, Sequence

import numpy as np

from streamrt.engine import StepResult, StreamBase, StreamInput, Urgency
from streamrt.errors import ConfigError, InputError, ModelStepError
from streamrt.models.faces.facemesh import FaceLandmarker, FaceTrack
from streamrt.models.faces.landmarks import lip_features
from streamrt.types import LipActivity, VideoFrame


@dataclass(frozen=True)
class LipActivitySettings:
    """window_ms: how far back (ms of media) the rule looks; min_frames: frames with a face needed
    in the window for a score (fewer: unknown); active_std: the standard deviation of the mouth
    opening (a ratio) that counts as moving lips, score 0.5; max_fps: the fastest frame rate taken
    (frames per second; faster frames are dropped), which also sizes the ring; max_pending_frames:
    frames waiting for the model (frames; past it the oldest are dropped, None keeps all);
    frame_budget_ms: a frame's step is due this long after it arrived (None: the scheduler's
    ``latency_budget_ms``)."""

    window_ms: float = 400.0
    min_frames: int = 2
    active_std: float = 0.015
    max_fps: float = 60.0
    max_pending_frames: int | None = 8
    frame_budget_ms: float | None = 200.0

    def __post_init__(self) -> None:
        for name in ("window_ms", "active_std", "max_fps"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"LipActivitySettings.{name} must be > 0, got {getattr(self, name)!r}")
        if self.min_frames < 2:
            raise ConfigError(f"LipActivitySettings.min_frames must be >= 2 frames (a spread needs two), got "
                              f"{self.min_frames}")
        if self.max_pending_frames is not None and self.max_pending_frames < 1:
            raise ConfigError(f"LipActivitySettings.max_pending_frames must be >= 1 frames or None, got "
                              f"{self.max_pending_frames}")
        if self.frame_budget_ms is not None and not self.frame_budget_ms > 0:
            raise ConfigError(f"LipActivitySettings.frame_budget_ms must be > 0 ms or None, got {self.frame_budget_ms}")

    @property
    def ring_frames(self) -> int:
        """Frames the ring holds: every frame of a window at ``max_fps``, plus the current one."""
        return math.ceil(self.window_ms * self.max_fps / 1000.0) + 1


def check_frame(pixels: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 RGB view of a frame: RGBA loses its alpha, gray becomes three channels.
    ``InputError`` (``bad_frame``) for anything else."""
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        raise InputError(f"a video frame must be a uint8 array, got {getattr(pixels, 'dtype', type(pixels).__name__)}",
                         code="bad_frame")
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4) or min(pixels.shape[:2]) < 1:
        raise InputError(f"a video frame must be (height, width, 3) RGB, got shape {pixels.shape}", code="bad_frame")
    return pixels[:, :, :3]


class LipActivityModel:
    """Shared: the face landmarker and the settings. ``create_stream`` takes no options."""

    def __init__(self, landmarker: FaceLandmarker, settings: LipActivitySettings = LipActivitySettings()):
        self.landmarker = landmarker
        self.settings = settings
        self.steps = 0
        self.frames = 0  # frames scored, all streams

    def create_stream(self, options: Mapping[str, object] | None = None) -> LipActivityStream:
        if options:
            raise ConfigError(f"the lip-activity model takes no options, got {sorted(options)}")
        return LipActivityStream(self)

    def step(self, streams: Sequence[LipActivityStream]) -> None:
        self.steps += 1
        for s in streams:
            try:
                self.frames += s._run()
            except Exception as exc:  # the face tracker failed on this stream's frame
                err = ModelStepError(f"lip activity: {type(exc).__name__}: {exc}")
                err.stream = s
                raise err from exc

    def describe(self) -> dict:
        s = self.settings
        return {"landmarker": self.landmarker.name, "lip_model": "rule: std of mouth opening over a causal window",
                "window_ms": s.window_ms, "active_std": s.active_std, "min_frames": s.min_frames,
                "max_fps": s.max_fps}


class LipActivityStream(StreamBase):
    """One camera: frames waiting, the face tracker (opened at the first step), the ring of the
    last frames' times and mouth openings (NaN: no face), and counts of frames dropped by reason."""

    input_kinds: ClassVar[frozenset[type]] = frozenset({VideoFrame})

    def __init__(self, model: LipActivityModel):
        self.model = model
        self.settings = model.settings
        n = self.settings.ring_frames
        self._times = np.full(n, -np.inf)
        self._openings = np.full(n, np.nan)
        self._written = 0  # frames written to the ring (the next goes to _written % n)
        self._pending: deque[VideoFrame] = deque()
        self._last_ms = -math.inf  # the last frame taken
        self._track: FaceTrack | None = None
        self._finished = False
        self._out: list[LipActivity] = []
        self.lips: np.ndarray | None = None  # the last face's 40 normalised lip landmarks
        self.dropped = {"late": 0, "too_fast": 0, "behind": 0}

    # ---- input ---------------------------------------------------------------------------------
    def accept(self, item: StreamInput) -> None:
        if not isinstance(item, VideoFrame):
            return super().accept(item)
        if not math.isfinite(item.time_ms):
            raise InputError(f"video frame time_ms must be a finite number of ms, got {item.time_ms!r}",
                             code="bad_frame")
        pixels = check_frame(item.pixels)
        if item.time_ms <= self._last_ms:
            self.dropped["late"] += 1
            return
        if item.time_ms - self._last_ms < 1000.0 / self.settings.max_fps - 1e-6:
            self.dropped["too_fast"] += 1
            return
        self._last_ms = item.time_ms
        self._pending.append(item if pixels is item.pixels else VideoFrame(pixels, item.time_ms))
        limit = self.settings.max_pending_frames
        while limit is not None and len(self._pending) > limit:
            self._pending.popleft()
            self.dropped["behind"] += 1

    def input_finished(self) -> None:
        self._finished = True
        if not self._pending:
            self._close_track()

    def cancel(self) -> None:
        super().cancel()
        self._pending.clear()
        self._close_track()

    # ---- state ---------------------------------------------------------------------------------
    def is_ready(self) -> bool:
        return not self.cancelled and bool(self._pending)

    def is_done(self) -> bool:
        return self.cancelled or (self._finished and not self._pending)

    def urgency(self) -> Urgency:
        return Urgency(self.settings.frame_budget_ms)

    def pop_result(self) -> StepResult:
        out, self._out = self._out, []
        return StepResult(lips=out)

    # ---- inside model.step ---------------------------------------------------------------------
    def _run(self) -> int:
        if self._track is None:
            self._track = self.model.landmarker.open()
        n = 0
        while self._pending:
            frame = self._pending.popleft()
            points = self._track.landmarks(frame.pixels)
            self._out.append(self._score(frame.time_ms, points))
            n += 1
        if self._finished:
            self._close_track()
        return n

    def _score(self, time_ms: float, points: np.ndarray | None) -> LipActivity:
        """Write this frame into the ring and score it from the frames in its window (causal)."""
        s = self.settings
        opening = None
        if points is not None:
            feats = lip_features(points)
            opening, self.lips = feats.opening, feats.lips
        i = self._written % len(self._times)
        self._times[i] = time_ms
        self._openings[i] = np.nan if opening is None else opening
        self._written += 1
        if opening is None:
            return LipActivity(time_ms, None, None, None)
        in_window = (self._times >= time_ms - s.window_ms - 1e-6) & ~np.isnan(self._openings)
        if int(in_window.sum()) < s.min_frames:
            return LipActivity(time_ms, None, None, opening)
        std = float(np.std(self._openings[in_window]))
        score = min(1.0, 0.5 * std / s.active_std)
        return LipActivity(time_ms, score, std >= s.active_std, opening)

    def _close_track(self) -> None:
        if self._track is not None:
            track, self._track = self._track, None
            track.close()
