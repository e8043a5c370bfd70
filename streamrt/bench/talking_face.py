"""A talking face with a known truth: a real photo whose mouth is warped open and shut on a schedule.

Talking-face video is not packaged anywhere we can install, so the lip-activity benchmark (and its
tests) animate the mouth region of a real photo (``skimage.data.astronaut()``, the ``dev`` extra):
the face detector and landmarker are real, the ground truth (when the lips move) is known exactly.

    face = TalkingFace.from_photo(photo, mouth)      # mouth: where the lips are (found by FaceMesh)
    clip = face.render(DEFAULT_SCHEDULE, fps=30)      # [(time_ms, rgb, truth)], truth True/False/None

The warp: the photo's mouth is open (inner-lip gap about 0.18 of the mouth width); to close it by
``1 - openness`` the pixels above and below the lips' middle line are sampled from further out, so
the inner edges of both lips meet at the line (``overlap`` times the half gap: they press a little
past it, since the teeth show a little further than FaceMesh's inner-lip points). The shift fades out linearly over ``reach`` times the
shift vertically and sideways beyond the mouth corners, so the face around the
mouth stays put and the warp never folds. Segments: ``talk`` (syllables: the mouth opens and shuts
at 3-6 Hz with varying depth), ``still`` (closed lips), ``still_open`` (lips held open: open but
not moving), ``no_face`` (a photo with no face in it). Every frame gets sensor noise and a slow
sway of the head by a few pixels, so a still face is still the way a real one is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Segment = tuple[float, float, str]  # (start_ms, end_ms, kind)
KINDS = ("talk", "still", "still_open", "no_face")
TRUTH = {"talk": True, "still": False, "still_open": False, "no_face": None}

DEFAULT_SCHEDULE: tuple[Segment, ...] = (
    (0, 2000, "still"), (2000, 4500, "talk"), (4500, 6000, "still"), (6000, 7200, "talk"),
    (7200, 9000, "still_open"), (9000, 10000, "no_face"), (10000, 12000, "talk"), (12000, 13000, "still"),
)


@dataclass(frozen=True)
class Mouth:
    """Where the lips are in the photo (pixels): the middle line between the inner lips (xc, yc),
    the half gap between them and the half width between the inner corners."""

    xc: float
    yc: float
    half_gap: float
    half_width: float

    @classmethod
    def from_landmarks(cls, points: np.ndarray) -> "Mouth":
        """From FaceMesh landmarks in pixels (13/14 inner lips, 78/308 inner corners)."""
        up, lo, left, right = points[13], points[14], points[78], points[308]
        return cls(float((left[0] + right[0]) / 2), float((up[1] + lo[1]) / 2), float(abs(lo[1] - up[1]) / 2),
                   float(abs(right[0] - left[0]) / 2))


class TalkingFace:
    def __init__(self, photo: np.ndarray, mouth: Mouth, no_face: np.ndarray, *, reach: float = 6.0,
                 overlap: float = 1.4, noise: float = 2.0, sway_px: float = 2.0, seed: int = 0):
        self.photo = np.ascontiguousarray(photo[:, :, :3]).astype(np.float32)
        self.mouth = mouth
        self.no_face = np.ascontiguousarray(no_face[:, :, :3])
        self.overlap = overlap
        self.noise = noise
        self.sway_px = sway_px
        self.seed = seed
        h, w = self.photo.shape[:2]
        ry = reach * overlap * max(mouth.half_gap, 1.0)
        self._y0, self._y1 = max(0, int(mouth.yc - ry) - 1), min(h, int(mouth.yc + ry) + 2)
        self._x0, self._x1 = max(0, int(mouth.xc - 3 * mouth.half_width)), min(w, int(mouth.xc + 3 * mouth.half_width) + 1)
        yy, xx = np.mgrid[self._y0:self._y1, self._x0:self._x1].astype(np.float32)
        dy = yy - mouth.yc
        fade = np.clip(1 - np.abs(dy) / ry, 0, None) * np.exp(-(((xx - mouth.xc) / (1.6 * mouth.half_width)) ** 4))
        self._yy, self._xx, self._push = yy, xx, np.where(dy >= 0, 1.0, -1.0) * fade

    def frame(self, openness: float) -> np.ndarray:
        """The photo with the mouth at ``openness`` (1: as photographed, 0: shut), float32 RGB."""
        out = self.photo.copy()
        shift = self.overlap * self.mouth.half_gap * (1.0 - float(np.clip(openness, 0.0, 1.0)))
        if shift > 0:
            src_y = np.clip(self._yy + shift * self._push, 0, self.photo.shape[0] - 1)
            y0 = np.floor(src_y).astype(int)
            y1 = np.minimum(y0 + 1, self.photo.shape[0] - 1)
            t = (src_y - y0)[..., None]
            x = self._xx.astype(int)
            out[self._y0:self._y1, self._x0:self._x1] = (1 - t) * self.photo[y0, x] + t * self.photo[y1, x]
        return out

    def openness(self, t_ms: float, schedule: tuple[Segment, ...]) -> tuple[str, float]:
        """The segment kind at ``t_ms`` and the mouth's openness then."""
        for start, end, kind in schedule:
            if start <= t_ms < end:
                break
        else:
            return "still", 0.0
        if kind == "still_open":
            return kind, 1.0
        if kind != "talk":
            return kind, 0.0
        # syllables: each lasts 170-330 ms (3-6 Hz) and opens the mouth to a depth in 0.5..1
        rng = np.random.default_rng(self.seed + int(start))
        pos, x = start, t_ms
        while True:
            dur = float(rng.uniform(170, 330))
            depth = float(rng.uniform(0.5, 1.0))
            if x < pos + dur:
                return kind, depth * float(np.sin(np.pi * (x - pos) / dur)) ** 2
            pos += dur

    def render(self, schedule: tuple[Segment, ...] = DEFAULT_SCHEDULE, fps: float = 30.0, *,
               jitter_ms: float = 0.0) -> list[tuple[float, np.ndarray, bool | None]]:
        """Frames at ``fps`` over the schedule: (time_ms, uint8 RGB, truth). ``jitter_ms``: each
        frame's time moves by up to that much (a camera's uneven rate), never out of order."""
        rng = np.random.default_rng(self.seed)
        end = max(e for _, e, _ in schedule)
        step = 1000.0 / fps
        out = []
        for i in range(int(end // step)):
            t = i * step + (float(rng.uniform(-jitter_ms, jitter_ms)) if jitter_ms else 0.0)
            t = max(t, out[-1][0] + 1.0 if out else 0.0)
            kind, a = self.openness(t, schedule)
            if kind == "no_face":
                img = self.no_face.astype(np.float32)
            else:
                img = self.frame(a)
                dx = int(round(self.sway_px * np.sin(2 * np.pi * t / 3100.0)))
                dy = int(round(self.sway_px * np.sin(2 * np.pi * t / 4300.0)))
                img = np.roll(img, (dy, dx), axis=(0, 1))
            if self.noise:
                img = img + rng.normal(0, self.noise, img.shape).astype(np.float32)
            out.append((t, np.clip(img, 0, 255).astype(np.uint8), TRUTH[kind]))
        return out


def write_y4m(path, frames, fps: int) -> None:
    """Write RGB frames ((H, W, 3) uint8, even sizes) as a Y4M file (4:2:0, BT.601 full range): what
    Chromium plays as a fake camera (``--use-file-for-fake-video-capture=FILE.y4m``)."""
    with open(path, "wb") as f:
        h, w = frames[0].shape[:2]
        f.write(f"YUV4MPEG2 W{w} H{h} F{int(fps)}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            x = rgb.astype(np.float32)
            r, g, b = x[..., 0], x[..., 1], x[..., 2]
            planes = (0.299 * r + 0.587 * g + 0.114 * b, 128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
                      128 + 0.5 * r - 0.418688 * g - 0.081312 * b)
            f.write(b"FRAME\n")
            for i, p in enumerate(planes):
                if i:  # chroma at half width and height
                    p = (p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2]) / 4
                f.write(np.clip(np.round(p), 0, 255).astype(np.uint8).tobytes())


ASTRONAUT_CROP = (slice(20, 260), slice(60, 380))  # 320x240 around the face, as a webcam frames it


def astronaut_face(landmarker, **kwargs) -> TalkingFace:
    """The astronaut photo cropped to 320x240 around her face, its mouth found by ``landmarker`` (a
    ``FaceLandmarker``); no-face frames show skimage's coffee photo, cropped the same size. Needs
    scikit-image (the ``dev`` extra). ``kwargs`` go to ``TalkingFace``."""
    import skimage.data

    photo = np.ascontiguousarray(skimage.data.astronaut()[ASTRONAUT_CROP])
    no_face = np.ascontiguousarray(skimage.data.coffee()[: photo.shape[0], : photo.shape[1]])
    track = landmarker.open()
    try:
        points = track.landmarks(photo)
    finally:
        track.close()
    if points is None:
        raise RuntimeError("the landmarker found no face in the astronaut photo")
    return TalkingFace(photo, Mouth.from_landmarks(points), no_face, **kwargs)
