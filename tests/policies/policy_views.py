"""Synthetic PolicyViews for policy tests (no model)."""

import numpy as np

from policies.base import HypToken, PolicyView


def token(text, frame=None, n_frames=50, attention=None, start_ms=None, frame_ms=20.0):
    if attention is None and frame is not None:
        attention = np.zeros(n_frames)
        attention[frame] = 1.0
    start = start_ms if start_ms is not None else (frame or 0) * frame_ms
    return HypToken(id=0, text=text, start_ms=start, end_ms=start, attention=attention)


def view(tokens, source_ms=1000.0, n_frames=50, committed=(), finished=False, committed_start_ms=(), window_start_ms=0.0):
    return PolicyView(
        source_ms=source_ms,
        source_finished=finished,
        window_start_ms=window_start_ms,
        frame_ms=20.0,
        n_frames=n_frames,
        committed=tuple(committed),
        hypothesis=tuple(tokens),
        committed_start_ms=tuple(committed_start_ms),
    )
