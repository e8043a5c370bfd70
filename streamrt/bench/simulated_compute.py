"""A stand-in for a real network when measuring the scheduler itself (``streamrt bench streams --model
counting-sim:FIXED_MS:PER_STREAM_MS``)."""

from __future__ import annotations

import time
from typing import Mapping

from streamrt.engine import StreamingModel


class SimulatedCompute:
    """Wraps a model so each batched step also sleeps ``fixed_ms + per_stream_ms * b`` (the GIL is
    released, as torch does): a stand-in for a real network when measuring the scheduler itself.

    precision_speedup: when set, the wrapper offers the ``set_low_precision_fraction(f)`` knob and a
    step costs ``(1 - precision_speedup * f)`` of its time (a simulated mixed-precision kernel).
    """

    def __init__(self, model: StreamingModel, fixed_ms: float, per_stream_ms: float,
                 precision_speedup: float | None = None):
        self.model = model
        self.sample_rate = model.sample_rate
        self.fixed_ms = fixed_ms
        self.per_stream_ms = per_stream_ms
        self.precision_speedup = precision_speedup
        self.low_precision_fraction = 0.0
        if precision_speedup is not None:
            self.set_low_precision_fraction = self._set_fraction

    def _set_fraction(self, f: float) -> None:
        self.low_precision_fraction = float(f)

    def create_stream(self, options: Mapping[str, object] | None = None):
        return self.model.create_stream(options)

    def step(self, streams) -> None:
        self.model.step(streams)
        cost_ms = self.fixed_ms + self.per_stream_ms * len(streams)
        cost_ms *= 1.0 - (self.precision_speedup or 0.0) * self.low_precision_fraction
        time.sleep(cost_ms / 1000.0)

    def describe(self) -> dict:
        return {"simulated_fixed_ms": self.fixed_ms, "simulated_per_stream_ms": self.per_stream_ms,
                "simulated_precision_speedup": self.precision_speedup}
