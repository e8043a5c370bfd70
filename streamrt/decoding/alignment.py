"""Token and word timestamps from alignment-head cross-attention.

``attention`` is (n_tokens, n_frames): row i is the alignment heads' attention (averaged over heads)
at the position that predicted token i. Two aligners map each token to one encoder frame:

- ``monotonic_argmax``: each token's argmax frame, never earlier than the previous token's
  (a running maximum). O(n_tokens * n_frames), no tuning; the default.
- ``dtw_frames``: Whisper's method: a monotonic path through -attention found by dynamic time
  warping (the recurrence is vectorised per token row); each token gets the first frame on its row.

Frame f covers media [window_start_ms + f*frame_ms, + frame_ms).
"""

from __future__ import annotations

import numpy as np

from policies.base import word_spans  # noqa: F401  (re-exported: one definition of a word)


def monotonic_argmax(attention: np.ndarray, first_frame: int = 0) -> np.ndarray:
    """Frame index per token: argmax of its row, clamped to be non-decreasing and >= first_frame."""
    if attention.shape[0] == 0 or attention.shape[1] == 0:
        return np.full(attention.shape[0], first_frame, dtype=np.int64)
    frames = attention.argmax(axis=1)
    return np.maximum.accumulate(np.maximum(frames, first_frame))


def dtw_frames(attention: np.ndarray, first_frame: int = 0) -> np.ndarray:
    """First frame of each token on the minimum-cost monotonic path through ``-attention``."""
    n, m = attention.shape
    if n == 0 or m == 0:
        return np.full(n, first_frame, dtype=np.int64)
    start = min(max(first_frame, 0), m - 1)
    cost = -attention[:, start:].astype(np.float64)
    m2 = cost.shape[1]
    acc = np.full((n, m2), np.inf)
    # row 0: a horizontal run from frame 0
    acc[0] = np.cumsum(cost[0])
    for i in range(1, n):
        # acc[i, j] = cost[i, j] + min(acc[i-1, j-1], acc[i-1, j], acc[i, j-1])
        # = C[j] + min_{k<=j}(a[k] - C[k-1]), a[k] = min(acc[i-1, k-1], acc[i-1, k]), C = cumsum(cost[i])
        prev = acc[i - 1]
        a = prev.copy()
        a[1:] = np.minimum(prev[1:], prev[:-1])
        c = np.cumsum(cost[i])
        c_before = np.concatenate(([0.0], c[:-1]))
        acc[i] = c + np.minimum.accumulate(a - c_before)
    # backtrace from the corner; moving back, the last frame seen on a row is its first
    firsts = np.zeros(n, dtype=np.int64)
    i, j = n - 1, m2 - 1
    while True:
        firsts[i] = j
        if i == 0 and j == 0:
            break
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            k = int(np.argmin((acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])))
            i, j = (i - 1, j - 1) if k == 0 else (i - 1, j) if k == 1 else (i, j - 1)
    return firsts + start


def token_times(
    attention: np.ndarray,
    *,
    window_start_ms: float,
    frame_ms: float,
    first_frame: int = 0,
    last_frame: int | None = None,
    method: str = "argmax",
) -> tuple[np.ndarray, np.ndarray]:
    """(start_ms, end_ms) per token. A token ends where the next begins (the last one frame later).

    last_frame: frames at or past it (padding) are ignored by clamping the result.
    """
    if method == "argmax":
        frames = monotonic_argmax(attention, first_frame)
    elif method == "dtw":
        frames = dtw_frames(attention, first_frame)
    else:
        raise ValueError(f"unknown alignment method {method!r}; use 'argmax' or 'dtw'")
    if last_frame is not None:
        frames = np.minimum(frames, max(last_frame - 1, 0))
    starts = window_start_ms + frames * frame_ms
    ends = np.empty_like(starts)
    if len(starts):
        ends[:-1] = np.maximum(starts[1:], starts[:-1])
        ends[-1] = starts[-1] + frame_ms
    return starts.astype(np.float64), ends.astype(np.float64)
