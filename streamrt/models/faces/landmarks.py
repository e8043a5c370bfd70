"""Lip features from the 468 FaceMesh landmarks (pure numpy).

Landmark indices are MediaPipe FaceMesh's canonical mesh: 13/14 are the inner upper/lower lip at
the middle, 78/308 the inner mouth corners, 33/263 the outer eye corners. Coordinates are pixels
(x, y) and depth z in pixel-like units, so distances are true to the image's aspect ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_LANDMARKS = 468
# the 40 landmarks of FaceMesh's lip contours (outer and inner, upper and lower)
LIP_LANDMARKS = np.array([0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185,
                          191, 267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409,
                          415])
UPPER_INNER, LOWER_INNER = 13, 14
MOUTH_LEFT, MOUTH_RIGHT = 78, 308
EYE_LEFT, EYE_RIGHT = 33, 263


@dataclass(frozen=True)
class LipFeatures:
    """One frame's lip features.

    opening: the inner-lip gap over the mouth width (|13-14| / |78-308|), about 0.02 for closed
    lips and 0.18 for a wide-open mouth; lips: the 40 lip landmarks (x, y, z) in the face's own
    frame: origin between the outer eye corners, x along the eye line, unit = the distance
    between the eye corners (so position, size and roll of the face in the picture drop out)."""

    opening: float
    lips: np.ndarray  # (40, 3) float32


def lip_features(landmarks: np.ndarray) -> LipFeatures:
    """``landmarks``: (468, 3) (or more, with the iris points) in pixels."""
    p = np.asarray(landmarks, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < N_LANDMARKS or p.shape[1] != 3:
        raise ValueError(f"expected ({N_LANDMARKS}, 3) landmarks, got shape {p.shape}")
    width = np.linalg.norm(p[MOUTH_LEFT, :2] - p[MOUTH_RIGHT, :2])
    gap = np.linalg.norm(p[UPPER_INNER, :2] - p[LOWER_INNER, :2])
    opening = float(gap / width) if width > 0 else 0.0
    origin = (p[EYE_LEFT] + p[EYE_RIGHT]) / 2
    axis = p[EYE_RIGHT, :2] - p[EYE_LEFT, :2]
    scale = float(np.linalg.norm(axis)) or 1.0
    c, s = axis / scale
    rot = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # rotates the eye line onto +x
    lips = ((p[LIP_LANDMARKS] - origin) @ rot.T) / scale
    return LipFeatures(opening, lips.astype(np.float32))
