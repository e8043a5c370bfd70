"""A tiny deterministic model for testing transports, sessions and the scheduler without weights.

``CountingModel`` "recognizes" one word per ``word_ms`` of audio: the i-th word is ``w{i}`` and
spans [i*word_ms, (i+1)*word_ms). A step consumes up to ``chunk_ms`` of audio; a word is committed
once ``hold_ms`` of audio past its end has been consumed (or at end of stream), and the next
uncommitted word is the partial. It implements the ``streamrt.engine`` protocols exactly as a real
model does, so code tested with it runs unchanged with Whisper.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from streamrt.engine import SampleCounts, StepResult, UnitDraft


class CountingStream(SampleCounts):
    def __init__(self, model: "CountingModel"):
        self.model = model
        self._received = 0  # samples
        self._consumed = 0
        self._finished = False
        self._next_word = 0
        self._pending: list[UnitDraft] = []
        self._partial: str | None = None

    def accept_audio(self, samples: np.ndarray) -> None:
        self._received += len(samples)

    def is_ready(self) -> bool:
        chunk = self.model.chunk_ms * self.model.sample_rate // 1000
        backlog = self._received - self._consumed
        return backlog >= chunk or (self._finished and not self.is_done())

    def is_done(self) -> bool:
        total_words = int(np.ceil(self.received_ms / self.model.word_ms - 1e-9))
        return self._finished and self._consumed >= self._received and self._next_word >= total_words

    def _words_in(self, ms: float) -> int:
        return int(ms // self.model.word_ms)

    def _advance(self) -> None:
        chunk = self.model.chunk_ms * self.model.sample_rate // 1000
        self._consumed = min(self._received, self._consumed + chunk)
        now = self.consumed_ms
        flushing = self._finished and self._consumed >= self._received
        w = self.model.word_ms
        # whole words heard so far (a trailing part-word counts at end of stream)
        heard = int(np.ceil(now / w - 1e-9)) if flushing else self._words_in(now)
        while self._next_word < heard:
            end = (self._next_word + 1) * w
            if not flushing and end + self.model.hold_ms > now:
                break
            i = self._next_word
            self._pending.append(UnitDraft(f"w{i}", i * w, min(end, now), now))
            self._next_word += 1
        self._partial = f"w{self._next_word}" if self._next_word < heard else ""

    def pop_result(self) -> StepResult:
        out = StepResult(self._pending, self._partial)
        self._pending, self._partial = [], None
        return out


class CountingModel:
    """``batch_sizes``: the sizes of the most recent steps (at most ``KEPT_BATCH_SIZES``, so that a
    server on this model for days does not grow; the scheduler's stats count every step)."""

    sample_rate = 16000
    KEPT_BATCH_SIZES = 4096

    def __init__(self, word_ms: float = 500.0, chunk_ms: int = 200, hold_ms: float = 300.0):
        self.word_ms = word_ms
        self.chunk_ms = chunk_ms
        self.hold_ms = hold_ms
        self.steps = 0
        self.batch_sizes: list[int] = []

    def create_stream(self, options: Mapping[str, object] | None = None) -> CountingStream:
        return CountingStream(self)

    def step(self, streams: Sequence[CountingStream]) -> None:
        self.steps += 1
        self.batch_sizes.append(len(streams))
        if len(self.batch_sizes) > self.KEPT_BATCH_SIZES:
            del self.batch_sizes[: self.KEPT_BATCH_SIZES // 2]  # amortised: once per 2048 steps
        for s in streams:
            s._advance()
