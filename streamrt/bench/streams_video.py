"""Cameras for the streams benchmark: every captioning session also gets a camera (issue 20's
"streams a 2-core CPU holds with video on").

    cameras = Cameras.astronaut(fps=15)                            # loads FaceMesh, renders the clip
    result = await run_streams(model, 12, 30.0, audio, cameras=cameras)   # streamrt.bench.streams

The camera is the animated astronaut photo of ``streamrt bench lips`` and the tests
(``streamrt.bench.talking_face``: a real photo, 320x240, its mouth warped open and shut; here a
12 s clip of still and talking lips, a face always in view, looped; each stream starts at another
frame of it). Its frames are JPEG pictures (quality 85, as the browser pages send), and each goes
the way a WebSocket client's ``video`` message goes in ``streamrt serve --video``: the JSON text
is parsed, its base64 JPEG decoded by ``VideoIntake`` (header checked against
``max_video_frame_pixels``, Pillow decode) on the event loop, handed to the session's
``receive_video`` and on to its lip-activity session (``Session(video=...)``), which the one
``Scheduler`` steps with the shared ``LipActivityModel`` (FaceMesh + the lip rule) beside the
speech model, as the server's ``SessionBridge`` does. Not measured: the socket itself and the
``lips`` messages the server would send back. A frame of media time ``t`` is handed over at
``t`` after the stream's first audio sample (the audio clock), on the wall clock.

Per stream: frames sent, scored and dropped (``behind``: the model fell ``max_pending_frames``
behind; ``late`` / ``too_fast``; frames the decoder refused), and the time from a frame's arrival
(before its decode) to its score. A stream *kept its video* when, after its first ``settle_s``
seconds of media, its p95 of that time stayed within the lip model's ``frame_budget_ms`` and no
frame was dropped or refused; the streams benchmark counts a stream as held only when its audio and
its video both kept up. The first ``settle_s`` (2 s) are reported apart (``settling``; a run no
longer than that judges every frame): all of a trial's streams join within 100 ms, and each one's
FaceMesh graph opens at its first step (60 ms or more apiece), so a trial of N cameras starts with
a burst that a server whose clients come and go does not see.
"""

from __future__ import annotations

import asyncio
import base64
import io
from dataclasses import dataclass, field

import numpy as np

from streamrt.bench.stream_records import rounded_percentile
from streamrt.clock import Clock
from streamrt.errors import ConfigError, ModelLoadError, StreamrtError
from streamrt.scheduler import Scheduler
from streamrt.server.video import VideoIntake
from streamrt.server.wire import parse_json
from streamrt.session import Session
from streamrt.stream_session import StepOutput, StreamSession
from streamrt.tasks.lips import LipActivityModel, LipActivitySettings
from streamrt.types import ErrorEvent

# what the camera shows, looped: the face is always in view, the lips still or talking
CAMERA_SCHEDULE = ((0, 2000, "still"), (2000, 6000, "talk"), (6000, 8000, "still"), (8000, 12000, "talk"))
JPEG_QUALITY = 85
MAX_VIDEO_FRAME_PIXELS = 1280 * 720  # ServerSettings' default, as `streamrt serve` has it


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def check_video_fps(fps: float | None, max_fps: float = LipActivitySettings.max_fps) -> float | None:
    """``None`` or 0: no cameras; else frames per second in (0, ``max_fps``] (the lip model drops
    faster frames as ``too_fast``). ``ConfigError`` naming the setting and the numbers otherwise."""
    if fps is None or fps == 0:
        return None
    if not 0 < fps <= max_fps:
        raise ConfigError(f"--video-fps must be > 0 and <= the lip model's max_fps ({max_fps:g} frames/s), or 0 "
                          f"for no cameras; got {fps:g} frames/s")
    return float(fps)


class Cameras:
    """What every run shares: the lip-activity model and the camera's frames as base64 JPEG.

    ``frames``: the clip's pictures (looped) as JPEG bytes; ``fps``: the camera's rate.
    ``max_video_frame_pixels``: the server's limit the decoder checks (None: none)."""

    path = "websocket: JSON text, base64 JPEG decoded on the event loop (VideoIntake), Session.receive_video"

    def __init__(self, model: LipActivityModel, frames: list[bytes], fps: float, *,
                 max_video_frame_pixels: int | None = MAX_VIDEO_FRAME_PIXELS, frame_shape: tuple | None = None,
                 settle_s: float | None = 2.0):
        fps = check_video_fps(fps, model.settings.max_fps)
        if fps is None or not frames:
            raise ConfigError("Cameras need a frame rate > 0 and at least one frame")
        if settle_s is not None and not settle_s >= 0:
            raise ConfigError(f"Cameras.settle_s must be >= 0 s or None, got {settle_s!r}")
        self.settle_ms = 1000.0 * (settle_s or 0.0)  # frames before it are reported apart, not judged
        self.model = model
        self.fps = fps
        self.max_video_frame_pixels = max_video_frame_pixels
        self.jpeg_bytes_mean = float(np.mean([len(f) for f in frames]))
        self.frame_shape = frame_shape
        self.pictures = [base64.b64encode(f).decode("ascii") for f in frames]  # as a client sends them

    @classmethod
    def astronaut(cls, fps: float, settings: LipActivitySettings = LipActivitySettings()) -> "Cameras":
        """The real FaceMesh (the ``video`` extra; ``ModelLoadError`` naming it when missing) and
        the animated astronaut (scikit-image, the ``dev`` extra), ``CAMERA_SCHEDULE`` at ``fps``."""
        import importlib.util

        from streamrt.bench.talking_face import astronaut_face
        from streamrt.models.faces import load_face_mesh

        if check_video_fps(fps, settings.max_fps) is None:
            raise ConfigError("Cameras need a frame rate > 0 frames/s")
        mesh = load_face_mesh()
        if importlib.util.find_spec("skimage") is None:
            raise ModelLoadError("the benchmark's camera is the astronaut photo of scikit-image, which is not "
                                 "installed (the `dev` extra)")
        clip = astronaut_face(mesh).render(CAMERA_SCHEDULE, fps)
        return cls(LipActivityModel(mesh, settings), [encode_jpeg(rgb) for _, rgb, _ in clip], fps,
                   frame_shape=tuple(clip[0][1].shape))

    def start(self, sched: Scheduler, clock: Clock) -> "CameraRun":
        """One run's cameras on ``sched`` (the lip model joins it as ``lips``, as in `serve --video`)."""
        sched.add_model(self.model, name="lips")
        return CameraRun(self, sched, clock)

    @property
    def frame_budget_ms(self) -> float | None:
        return self.model.settings.frame_budget_ms

    def describe(self) -> dict:
        return {"fps": self.fps, "path": self.path, "settle_s": self.settle_ms / 1000.0, "clip": [list(s) for s in CAMERA_SCHEDULE],
                "frame": list(self.frame_shape) if self.frame_shape else None, "jpeg_quality": JPEG_QUALITY,
                "jpeg_bytes_mean": round(self.jpeg_bytes_mean), "lip_model": self.model.describe(),
                "frame_budget_ms": self.frame_budget_ms,
                "max_pending_frames": self.model.settings.max_pending_frames}


@dataclass
class _Camera:
    session: StreamSession
    index: int  # which stream: where in the clip its camera starts
    sent: dict[float, float] = field(default_factory=dict)  # media ms -> wall time it arrived
    delays_ms: list[float] = field(default_factory=list)  # arrival to score, per scored frame after settling
    settle_delays_ms: list[float] = field(default_factory=list)  # the same, before
    settle_dropped: dict[str, int] | None = None  # the stream's drops when the first judged frame came
    settle_ms: float = 0.0  # frames before this media time are reported apart
    frames_sent: int = 0
    refused: int = 0  # frames the decoder refused (none expected: they are valid JPEG)
    errors: list[str] = field(default_factory=list)


class CameraRun:
    """One run's cameras: ``open`` gives a session its video session, ``feed`` streams its frames
    in real time, ``figures`` / ``report`` summarise after the scheduler stopped."""

    def __init__(self, cameras: Cameras, sched: Scheduler, clock: Clock):
        self.cameras = cameras
        self.sched = sched
        self.clock = clock
        self._cams: dict[str, _Camera] = {}  # by the captioning session's id

    def open(self, session_id: str) -> StreamSession:
        """The lip-activity session to pass as ``Session(video=...)``."""
        video = StreamSession(self.cameras.model.create_stream(), self.clock, session_id=f"{session_id}-video")
        self._cams[session_id] = _Camera(video, len(self._cams))
        return video

    def _on_output(self, video: StreamSession, cam: _Camera) -> None:
        now = self.clock.now()
        for ev in video.events():
            if isinstance(ev, StepOutput):
                for a in ev.result.lips:
                    judged = a.time_ms >= cam.settle_ms
                    (cam.delays_ms if judged else cam.settle_delays_ms).append(1000.0 * (now - cam.sent.pop(a.time_ms)))
            elif isinstance(ev, ErrorEvent):
                cam.errors.append(f"{ev.code}: {ev.message}")

    async def feed(self, session: Session, start: float, duration_s: float) -> None:
        """The camera of ``session`` (already in the scheduler, its first audio sample at wall time
        ``start``): one frame every ``1 / fps`` s of media for ``duration_s``, each handed over at
        its media time on the wall clock, through the WebSocket path's decoder."""
        cam = self._cams[session.id]
        video = session.video
        self.sched.add(video, on_output=lambda s: self._on_output(s, cam), model=self.cameras.model)
        intake = VideoIntake(self.cameras.max_video_frame_pixels)
        pictures = self.cameras.pictures
        offset = cam.index * 37 % len(pictures)
        step_ms = 1000.0 / self.cameras.fps
        # a run no longer than the settling judges every frame
        cam.settle_ms = self.cameras.settle_ms if 1000.0 * duration_s > self.cameras.settle_ms else 0.0
        for k in range(int(duration_s * 1000.0 / step_ms + 1e-9)):
            t = k * step_ms
            delay = start + t / 1000.0 - self.clock.now()
            if delay > 0:
                await asyncio.sleep(delay)
            text = f'{{"type": "video", "time_ms": {t!r}, "jpeg": "{pictures[(k + offset) % len(pictures)]}"}}'
            if cam.settle_dropped is None and t >= cam.settle_ms:
                cam.settle_dropped = dict(video.stream.dropped)
            cam.sent[t] = self.clock.now()  # the message arrives: its parse and decode count
            cam.frames_sent += 1
            try:
                frame = intake.frame(parse_json(text))
            except StreamrtError as e:
                cam.refused += 1
                cam.sent.pop(t)
                cam.errors.append(f"{e.code}: {e.message}")
                continue
            session.receive_video(frame)
            self.sched.wake(video)

    def _budget_ms(self) -> float:
        budget = self.cameras.frame_budget_ms
        return self.sched.settings.latency_budget_ms if budget is None else budget

    def figures(self, session: Session) -> dict:
        """``session``'s camera after the run: counts (all frames), arrival-to-score p50/p95 (ms,
        after settling), ``kept``, and ``settling``: the first ``settle_s``'s frames on their own."""
        cam = self._cams[session.id]
        dropped = dict(cam.session.stream.dropped)
        before = dropped if cam.settle_dropped is None else cam.settle_dropped
        judged_dropped = {k: v - before.get(k, 0) for k, v in dropped.items()}
        p95 = float(np.percentile(cam.delays_ms, 95)) if cam.delays_ms else None
        kept = (p95 is not None and p95 <= self._budget_ms() and not any(judged_dropped.values())
                and not cam.refused and not cam.errors)
        return {"frames_sent": cam.frames_sent, "frames_scored": len(cam.delays_ms) + len(cam.settle_delays_ms),
                "dropped": dropped, "refused": cam.refused,
                "p50_frame_to_score_ms": rounded_percentile(cam.delays_ms, 50), "p95_frame_to_score_ms": rounded_percentile(cam.delays_ms, 95),
                "kept": kept, "errors": cam.errors[:3],
                "settling": {"frames_scored": len(cam.settle_delays_ms), "dropped": sum(before.values()),
                             "p95_frame_to_score_ms": rounded_percentile(cam.settle_delays_ms, 95)}}

    def report(self, sessions: list[Session], stats: dict) -> dict:
        """The video figures of ``sessions``' cameras, with the scheduler's ``stats`` (the ``lips``
        model's batches)."""
        rows = [self.figures(s) for s in sessions]
        delays = [d for s in sessions for d in self._cams[s.id].delays_ms]
        settle = [d for s in sessions for d in self._cams[s.id].settle_delays_ms]
        lane = stats.get("models", {}).get("lips", {})
        return {
            **self.cameras.describe(),
            "frame_budget_ms": self._budget_ms(),
            "frames_sent": sum(r["frames_sent"] for r in rows),
            "frames_scored": sum(r["frames_scored"] for r in rows),
            "frames_dropped": {k: sum(r["dropped"].get(k, 0) for r in rows) for k in ("behind", "late", "too_fast")},
            "frames_refused": sum(r["refused"] for r in rows),
            "p50_frame_to_score_ms": rounded_percentile(delays, 50),
            "p95_frame_to_score_ms": rounded_percentile(delays, 95),
            "max_frame_to_score_ms": rounded_percentile(delays, 100),
            "settling": {"frames_dropped": sum(r["settling"]["dropped"] for r in rows),
                         "p95_frame_to_score_ms": rounded_percentile(settle, 95), "max_frame_to_score_ms": rounded_percentile(settle, 100)},
            "streams_video_kept": sum(r["kept"] for r in rows),
            "video_kept": all(r["kept"] for r in rows),
            "lips_steps": lane.get("steps"),
            "lips_batch_size_mean": lane.get("batch_size_mean"),
        }
