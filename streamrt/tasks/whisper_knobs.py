"""Run-time knobs of ``WhisperStreamingModel`` that the scheduler's degradation ladder turns.

``streamrt.scheduler.degradation`` finds these through its knob protocols (``PrecisionKnob``,
``ChunkKnob``, ``PolicyStrideKnob``) and calls them only between steps (no step in flight):

    model.chunk_ms / model.set_chunk_ms(ms)       audio one step consumes; every stream uses the new
                                                  value from its next step on (the token loop's cap,
                                                  ``loop_iterations()``, grows with it)
    model.low_precision_fraction /                fraction of FlexiQ channels in int4; present only
    model.set_low_precision_fraction(f)           when the model was built with quantize="flexiq"
    model.policy_stride / model.set_policy_stride(k)
                                                  decode and ask the policy on every k-th step of a
                                                  stream only (the steps between run the encoder and
                                                  keep the new frames; the window is decoded later)

None of them skips audio or a hypothesis: every chunk is encoded and every word is decoded and
committed, later. What is set per decode for the configured step scales with the audio a decode
covers: the token loop's cap with ``decode_stretch()``, the stall limit with ``stall_stretch(n)``
(by the policy stride only for a policy that needs n > 1 decodes to commit a word), so a longer
decode interval is not taken for a stall.

``validate_step(streams)`` checks a batch before ``step`` mutates anything and raises the first
problem with ``exc.stream`` set to the offending stream, so the scheduler drops that stream and
retries the rest without stepping any of them twice.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Sequence

from streamrt.errors import ConfigError, ModelStepError
from streamrt.tasks.whisper_hypothesis import prefix as forced_prefix
from streamrt.tasks.whisper_stream_state import WhisperStream


class StreamStepError(ModelStepError):
    """A stream cannot be stepped; ``stream`` is the stream (the scheduler's failure isolation uses it)."""

    def __init__(self, message: str, stream: Any):
        super().__init__(message)
        self.stream = stream


class DegradationKnobs:
    """Mixin for ``WhisperStreamingModel``: needs ``settings`` (WhisperStreamSettings), ``decoder``
    and ``bundle``; ``_init_knobs(knob)`` must run in ``__init__``."""

    def _init_knobs(self, precision_knob: Any = None) -> None:
        self.policy_stride = 1
        self._configured_chunk_ms = self.settings.chunk_ms  # what max_loop_iterations was set for
        self.precision_knob = precision_knob
        if precision_knob is not None:
            # only a FlexiQ model offers the knob, so the scheduler's ladder only has it then
            self.set_low_precision_fraction = self._set_low_precision_fraction

    # ---- chunk -----------------------------------------------------------------------------------
    @property
    def chunk_ms(self) -> int:
        return self.settings.chunk_ms

    def set_chunk_ms(self, ms: float) -> None:
        """Audio per step from the next step on (ms, > 0). Call between steps only."""
        value = int(round(float(ms)))
        if value <= 0:
            raise ConfigError(f"chunk_ms must be > 0 ms, got {ms}")
        room_ms = (self.max_window_s - self.settings.forced_keep_s) * 1000.0
        if value > room_ms:
            raise ConfigError(
                f"chunk_ms {value} ms leaves no room in the window: it must be at most max_window_s - "
                f"forced_keep_s = {room_ms:g} ms")
        self.settings = replace(self.settings, chunk_ms=value)

    def decode_stretch(self) -> float:
        """The audio one decode covers now (chunk x policy stride) over the configured chunk, at
        least 1. The token loop's cap (``loop_iterations``), set for the configured step, scales
        with it; the stall limit with ``stall_stretch``."""
        return max(1.0, self.settings.chunk_ms * self.policy_stride / self._configured_chunk_ms)

    def stall_stretch(self, decodes_to_commit: int) -> float:
        """How much the stall limit (``whisper_window.stalled``) grows now for a stream whose policy
        needs ``decodes_to_commit`` decodes to write a word (``Policy.decodes_to_commit``): by the
        chunk over the configured chunk, at least 1, and by the policy stride only for a policy
        that needs more than one decode. After a decode such a policy still holds back the audio
        of the last n - 1 decode intervals, which grow with the stride; a policy that writes what
        one decode heard (AlignAtt) holds back only the audio it has not heard, whatever the
        interval, so the stride must not grow its limit: at chunk x4 with stride 2 its limit was
        8 x ``stall_reset_s`` (16 s), and a derailed decode's hallucination held the window."""
        chunk = self.settings.chunk_ms / self._configured_chunk_ms
        return max(1.0, chunk * (self.policy_stride if decodes_to_commit > 1 else 1))

    def loop_iterations(self) -> int | None:
        """The token loop's cap for a partial decode now: ``max_loop_iterations``, set for the
        configured chunk, scaled by ``decode_stretch()``. A longer chunk brings more words per
        decode; with the configured cap the decoder would fall further behind the audio every
        step, which is the opposite of what the ladder is for."""
        cap = self.settings.max_loop_iterations
        if cap is None:
            return None
        return max(cap, math.ceil(cap * self.decode_stretch() - 1e-9))

    # ---- precision -------------------------------------------------------------------------------
    @property
    def low_precision_fraction(self) -> float:
        return 0.0 if self.precision_knob is None else float(self.precision_knob.fraction)

    def _set_low_precision_fraction(self, fraction: float) -> None:
        self.precision_knob.set(fraction)

    # ---- policy stride ---------------------------------------------------------------------------
    def set_policy_stride(self, k: int) -> None:
        """Decode and ask the policy on every ``k``-th step of each stream only (k >= 1)."""
        if int(k) != k or k < 1:
            raise ConfigError(f"policy stride must be an integer >= 1, got {k}")
        self.policy_stride = int(k)

    def decides_now(self, stream: Any, final: bool) -> bool:
        """Whether ``stream`` decodes this step (always at end of stream). Counts skipped steps."""
        if final or self.policy_stride <= 1 or stream.skipped_decodes + 1 >= self.policy_stride:
            stream.skipped_decodes = 0
            return True
        stream.skipped_decodes += 1
        return False

    # ---- validation ------------------------------------------------------------------------------
    def validate_step(self, streams: Sequence[Any]) -> None:
        """Raise ``StreamStepError`` (``exc.stream`` set) for the first stream ``step`` cannot take,
        before anything is mutated."""
        seen: set[int] = set()
        for s in streams:
            if not isinstance(s, WhisperStream) or s.model is not self:
                raise StreamStepError("stream was created by another model", s)
            if id(s) in seen:
                raise StreamStepError("the same stream appears twice in one step", s)
            seen.add(id(s))
            prefix = len(forced_prefix(self, s))
            if prefix + 1 > self.decoder.max_tokens:
                raise StreamStepError(
                    f"forced decoder prefix of {prefix} tokens leaves no room in the model's "
                    f"{self.decoder.max_tokens} positions (lower max_prompt_tokens)", s)
