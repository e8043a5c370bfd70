"""Video frames on the WebSocket protocols (sans-I/O; captions ``/v1/stream`` and the voice agent
``/v1/dialogue`` alike): a ``video`` message in, a ``VideoFrame`` out.

    {"type": "video", "time_ms": 1234.5, "jpeg": "<base64 JPEG>"}

``time_ms`` is on the session's media clock, the one the audio's times use: milliseconds from the
first audio sample the client sent (so a frame and the audio captured with it line up). The
picture is decoded here (Pillow), after its header has been checked against
``max_video_frame_pixels``, so a small JPEG that claims a huge picture is refused before any
pixel is decoded. Frames must come in time order (``VideoIntake``: a frame not after the previous
one is ``late_frame``; the lip-activity encoder is causal). Every problem is a non-fatal
``InputError``: the frame is dropped, the session goes on.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from typing import Any, Mapping

import numpy as np

from streamrt.errors import InputError, LimitExceeded
from streamrt.types import VideoFrame

VIDEO_FIELDS = ("type", "time_ms", "jpeg")


def decode_jpeg(data: bytes, max_pixels: int | None) -> np.ndarray:
    """JPEG bytes -> (H, W, 3) uint8 RGB; ``bad_frame`` when it is not a JPEG picture,
    ``frame_too_big`` past ``max_pixels`` (width x height, checked from the header)."""
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(io.BytesIO(data), formats=["JPEG"])
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"video frame is not a JPEG picture ({type(e).__name__})", code="bad_frame") from None
    w, h = im.size
    if max_pixels is not None and w * h > max_pixels:
        raise LimitExceeded("max_video_frame_pixels", max_pixels, w * h, "pixels",
                            what=f"video frame of {w}x{h} (frame dropped)", code="frame_too_big")
    try:
        rgb = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:  # truncated or corrupt data past the header
        raise InputError(f"video frame JPEG cannot be decoded ({type(e).__name__}: {e})"[:200], code="bad_frame") from None
    return rgb


def parse_video_message(msg: Mapping[str, Any], max_pixels: int | None, *, after_ms: float | None = None) -> VideoFrame:
    """A validated ``video`` message as a frame (see the module docstring). ``after_ms``: the
    previous frame's time; a frame not after it is refused (``late_frame``) before it is decoded."""
    unknown = sorted(set(msg) - set(VIDEO_FIELDS))
    if unknown:
        raise InputError(f"video: unknown field(s) {', '.join(repr(k)[:40] for k in unknown[:5])}; allowed: "
                         f"{', '.join(VIDEO_FIELDS)} (frame dropped)", code="bad_frame")
    t = msg.get("time_ms")
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or t < 0:
        raise InputError(f"video: 'time_ms' must be a number of ms >= 0 on the audio's clock, got {repr(t)[:40]} "
                         "(frame dropped)", code="bad_frame")
    if after_ms is not None and t <= after_ms:
        raise InputError(f"video: time_ms {t:g} is not after the previous frame's {after_ms:g}: frames must come "
                         "in time order on the audio's clock (frame dropped)", code="late_frame")
    data = msg.get("jpeg")
    if not isinstance(data, str):
        raise InputError("video: 'jpeg' must be a base64 string of a JPEG picture (frame dropped)", code="bad_frame")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("video: 'jpeg' is not valid base64 (frame dropped)", code="bad_frame") from None
    return VideoFrame(decode_jpeg(raw, max_pixels), float(t))


class VideoIntake:
    """One connection's ``video`` messages: each decoded (``parse_video_message``, frames over
    ``max_pixels`` refused) and after the last frame taken (``late_frame`` otherwise)."""

    def __init__(self, max_pixels: int | None):
        self.max_pixels = max_pixels
        self.last_ms: float | None = None  # the last frame taken

    def frame(self, msg: Mapping[str, Any]) -> VideoFrame:
        frame = parse_video_message(msg, self.max_pixels, after_ms=self.last_ms)
        self.last_ms = frame.time_ms
        return frame
