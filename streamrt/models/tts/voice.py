"""What a TTS task needs from a voice: text in, float32 audio out at the voice's rate."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TtsVoice(Protocol):
    """A shared, loaded voice. ``synthesize`` is called from the scheduler's worker thread, one
    call at a time; ``rng`` draws the voice's noise (a seeded one makes the audio repeatable)."""

    name: str
    sample_rate: int  # Hz of the audio ``synthesize`` returns

    def synthesize(self, text: str, *, speed: float, rng: np.random.Generator) -> np.ndarray:
        """Mono float32 samples of ``text`` spoken (empty for text with nothing to say)."""
        ...

    def describe(self) -> dict:
        """JSON-able settings (name, voice, threads, sample rate) for ``ready`` and /healthz."""
        ...
