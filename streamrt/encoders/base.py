"""The streaming-encoder contract and the attention patterns every cached mode is built from.

An encoder is shared (weights); each session owns an ``EncoderState`` made by ``create_state()``.
``step(mel, state)`` takes the session's NEW log-mel frames and returns the encoder frames they
complete. Frames are indexed within a *window* (Whisper: at most 1500 frames = 30 s of absolute
positions); ``trim`` drops the window's start and re-bases it (see docs/encoders.md).

Attention patterns say which key position ``k`` a query position ``q`` (both window positions) may
attend, and when a query is *ready* (all keys it may attend exist):

- ``BlockCausal(chunk_frames, left_frames)``: ``k // C <= q // C`` and ``k >= (q // C) * C - L``
  (CarelessWhisper's block-causal encoder; NeMo's chunked limited-context attention). Ready when its
  block is complete.
- ``Sliding(left_frames, lookahead_frames)``: ``q - L <= k <= q + A`` (Moonshine v2). Ready when
  ``q + A`` exists. Look-ahead compounds over layers: the output lags ``n_layers * A`` frames.
- ``Full()``: every frame sees every frame (the re-encode baseline).

At end of stream (``final=True``) every pending query is ready and attends the keys that exist, which is
exactly the full pass on the same frames with the same mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import torch

from streamrt.errors import InputError

__all__ = ["EncoderOutput", "StreamingEncoder", "BlockCausal", "Sliding", "Full", "AttentionPattern", "check_trims"]


@dataclass(frozen=True, eq=False)
class EncoderOutput:
    """Encoder frames of one step.

    frames: (T, d_model) frames starting at window frame index ``start``. The caller's copy of the window
    becomes ``window[:start] + frames``. Cached modes: ``start`` == previous window length (a pure
    extension); re-encode mode and ``trim``: ``start == 0`` (the whole window is replaced).
    """

    frames: torch.Tensor
    start: int

    @property
    def end(self) -> int:
        return self.start + int(self.frames.shape[0])


@runtime_checkable
class StreamingEncoder(Protocol):
    frame_ms: float
    d_model: int
    max_window_frames: int

    def create_state(self) -> Any: ...

    def step(self, mel: torch.Tensor, state: Any, *, final: bool = False) -> EncoderOutput: ...

    def step_batch(
        self, mels: Sequence[torch.Tensor], states: Sequence[Any], *, final: Sequence[bool] | None = None
    ) -> list[EncoderOutput]: ...

    def window_frames(self, state: Any) -> int: ...

    def trim(self, state: Any, keep_last_frames: int) -> EncoderOutput: ...

    def trim_batch(self, states: Sequence[Any], keep_last_frames: Sequence[int]) -> list[EncoderOutput]:
        """``trim`` for many sessions at once (one batched re-encode where the mode re-encodes)."""
        ...


def check_trims(encoder: StreamingEncoder, states: Sequence[Any], keep_last_frames: Sequence[int]) -> None:
    """Every ``keep_last_frames`` within its session's window, checked before any session is touched."""
    if len(states) != len(keep_last_frames):
        raise InputError(f"trim_batch: {len(states)} states but {len(keep_last_frames)} keep counts")
    for state, keep in zip(states, keep_last_frames):
        window = encoder.window_frames(state)
        if not 0 <= keep <= window:
            raise InputError(f"trim: keep_last_frames={keep} is outside [0, {window}]")


@dataclass(frozen=True)
class BlockCausal:
    """Block-causal attention: blocks of ``chunk_frames``; ``left_frames`` before the block (None: all)."""

    chunk_frames: int
    left_frames: int | None = None

    def allowed(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        qb, kb = q // self.chunk_frames, k // self.chunk_frames
        ok = kb <= qb
        if self.left_frames is not None:
            ok &= k >= qb * self.chunk_frames - self.left_frames
        return ok

    def ready(self, n_out: int, n_in: int, final: bool) -> int:
        """How many queries are ready: they run from ``n_out`` up to (excluding) the returned index."""
        return n_in if final else max(n_out, (n_in // self.chunk_frames) * self.chunk_frames)

    def cache_frames(self, substep: int) -> int:
        """Keys a layer must hold: left context + the open block + one sub-step (inputs arrive in bursts)."""
        left = self.left_frames if self.left_frames is not None else 10**9
        return left + 2 * self.chunk_frames + substep


@dataclass(frozen=True)
class Sliding:
    """Sliding-window attention: ``left_frames`` back (None: all), ``lookahead_frames`` ahead."""

    left_frames: int | None = None
    lookahead_frames: int = 0

    def allowed(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        ok = k <= q + self.lookahead_frames
        if self.left_frames is not None:
            ok &= k >= q - self.left_frames
        return ok

    def ready(self, n_out: int, n_in: int, final: bool) -> int:
        return n_in if final else max(n_out, n_in - self.lookahead_frames)

    def cache_frames(self, substep: int) -> int:
        left = self.left_frames if self.left_frames is not None else 10**9
        return left + self.lookahead_frames + 2 * substep + 1


@dataclass(frozen=True)
class Full:
    """Unrestricted attention (offline Whisper, the re-encode baseline)."""

    def allowed(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.ones(torch.broadcast_shapes(q.shape, k.shape), dtype=torch.bool)

    def ready(self, n_out: int, n_in: int, final: bool) -> int:
        return n_in if final else n_out

    def cache_frames(self, substep: int) -> int:
        return 10**9


AttentionPattern = BlockCausal | Sliding | Full


def pattern_mask(pattern: AttentionPattern, n_frames: int) -> torch.Tensor:
    """(T, T) boolean mask of a full pass over ``n_frames`` window frames (True = may attend)."""
    pos = torch.arange(n_frames)
    return pattern.allowed(pos[:, None], pos[None, :])
