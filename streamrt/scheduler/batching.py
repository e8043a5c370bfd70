"""Constraint-aware batch sizing (ExeGPT, Oh et al. 2024, section 4: maximise throughput subject to
latency constraints), reduced to what a streaming step needs.

``StepTimeModel`` learns how long a batched step takes as a function of batch size, online, from the
steps actually run: t(b) = a + c*b, a least-squares fit over the last few steps. ``choose_batch_size``
takes the ready streams in deadline order (most urgent first) and picks the largest batch whose
predicted step time still meets the most urgent deadline; a bigger batch amortises the fixed part
``a`` over more streams, so it is the higher-throughput choice whenever it is allowed.

Pure functions of their inputs: no clock, no model, so they are tested with plain numbers.
"""

from __future__ import annotations

from collections import deque
from typing import Sequence


class StepTimeModel:
    """Online fit of step seconds against batch size: t(b) = a + c*b with a, c >= 0.

    Before any observation it predicts 0 s (optimistic: the first steps take the largest batch and
    so teach the model quickly). With one distinct batch size seen it assumes the whole time scales
    with the batch (a = 0), the cautious guess for growing the batch.
    """

    def __init__(self, window: int = 64):
        self._obs: deque[tuple[int, float]] = deque(maxlen=window)

    def observe(self, batch_size: int, seconds: float) -> None:
        if batch_size >= 1 and seconds >= 0:
            self._obs.append((batch_size, seconds))

    def reset(self) -> None:
        """Forget what was learned (the model's speed changed, e.g. a degradation level moved)."""
        self._obs.clear()

    @property
    def observations(self) -> int:
        return len(self._obs)

    def coefficients(self) -> tuple[float, float]:
        """(a seconds, c seconds per stream)."""
        n = len(self._obs)
        if n == 0:
            return 0.0, 0.0
        bs = [b for b, _ in self._obs]
        ts = [t for _, t in self._obs]
        mean_b = sum(bs) / n
        mean_t = sum(ts) / n
        var_b = sum((b - mean_b) ** 2 for b in bs)
        if var_b == 0:
            return 0.0, mean_t / mean_b
        c = sum((b - mean_b) * (t - mean_t) for b, t in zip(bs, ts)) / var_b
        if c < 0:  # noise: larger batches looked cheaper; treat the time as fixed
            return mean_t, 0.0
        a = mean_t - c * mean_b
        if a < 0:  # fit through the origin instead
            return 0.0, sum(b * t for b, t in zip(bs, ts)) / sum(b * b for b in bs)
        return a, c

    def predict(self, batch_size: int) -> float:
        a, c = self.coefficients()
        return a + c * batch_size


def choose_batch_size(
    deadlines: Sequence[float], now: float, model: StepTimeModel, max_batch_size: int | None
) -> int:
    """How many of the ready streams (``deadlines`` sorted ascending, most urgent first) to step now.

    The largest b (up to ``max_batch_size``) with now + t(b) <= deadlines[0]: every stream in the
    batch finishes when the batch does, and the first is the one with the least slack. When even
    b = 1 misses that deadline the machine is behind; then throughput is what catches up, so the
    answer is the largest batch allowed (and the degradation ladder deals with the overload).
    A split that the rest cannot survive is not made either: when the streams left out, stepped
    right after, would miss their own most urgent deadline, splitting only moves the lateness onto
    them and pays the step's fixed part twice, so everyone goes now.
    """
    n = len(deadlines)
    if n == 0:
        return 0
    cap = n if max_batch_size is None else min(n, max_batch_size)
    slack = deadlines[0] - now
    if model.predict(1) > slack:
        return cap
    a, c = model.coefficients()
    if c <= 0:
        return cap
    fits = int((slack - a) / c + 1e-9)
    b = max(1, min(cap, fits))
    if b < cap and now + model.predict(b) + model.predict(cap - b) > deadlines[b]:
        return cap
    return b
