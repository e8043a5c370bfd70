"""Preallocated per-stream key/value caches for the Whisper decoder (gpt-fast's ``KVCache`` style).

Both caches are allocated once per stream at their maximum size and written by position:

- self-attention: (layers, heads, max_tokens, head_dim). Rows ``[0:n_tokens)`` hold the keys/values
  of ``token_ids``; a new step keeps the longest common prefix and overwrites from there.
- cross-attention: (layers, heads, max_frames, head_dim). Rows ``[0:n_frames)`` hold the projected
  encoder frames of the current window; an ``EncoderOutput`` with ``start`` rewrites rows
  ``[start:start+T)`` only, so cached encoder modes project each new frame once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class DecoderCache:
    self_k: torch.Tensor
    self_v: torch.Tensor
    cross_k: torch.Tensor
    cross_v: torch.Tensor
    n_frames: int = 0  # rows cross-attention reads: the window, or max_frames with padding
    n_valid: int = 0  # rows holding the window's own frames
    token_ids: list[int] = field(default_factory=list)
    # bumped whenever the window's frames change (extension, re-encode or trim): cached
    # self-attention rows of layers >= 1 depend on the frames they attended to
    cross_version: int = 0
    token_cross_version: int = 0
    # the last decode's whole sequence (prefix + generated [+ eot]): the next decode's draft
    last_sequence: list[int] = field(default_factory=list)
    last_prefix_len: int = 0  # how much of last_sequence was forced

    @classmethod
    def allocate(
        cls, layers: int, heads: int, head_dim: int, max_tokens: int, max_frames: int, dtype=torch.float32,
        cross_dtype: torch.dtype | None = None,
    ) -> "DecoderCache":
        """``cross_dtype``: the cross-attention rows' dtype (default ``dtype``; bfloat16 halves them)."""
        cross_dtype = cross_dtype or dtype
        return cls(
            self_k=torch.zeros(layers, heads, max_tokens, head_dim, dtype=dtype),
            self_v=torch.zeros(layers, heads, max_tokens, head_dim, dtype=dtype),
            cross_k=torch.zeros(layers, heads, max_frames, head_dim, dtype=cross_dtype),
            cross_v=torch.zeros(layers, heads, max_frames, head_dim, dtype=cross_dtype),
        )

    @property
    def max_tokens(self) -> int:
        return self.self_k.shape[2]

    @property
    def max_frames(self) -> int:
        return self.cross_k.shape[2]

    def keep_tokens(self, n: int) -> None:
        """Forget cached self-attention rows from ``n`` on (they are overwritten by position later)."""
        del self.token_ids[n:]

    def reusable_prefix(self, ids: list[int], *, across_encoder_changes: bool) -> int:
        """How many leading ``ids`` already have valid self-attention rows.

        With ``across_encoder_changes`` False, rows computed before the encoder window last changed
        are not reused (exact: the prefix is re-decoded against the new window); True keeps them (an
        approximation: those tokens attended to the earlier window), which makes the committed
        prefix free.
        """
        if not across_encoder_changes and self.token_cross_version != self.cross_version:
            return 0
        n = 0
        for a, b in zip(self.token_ids, ids):
            if a != b:
                break
            n += 1
        return n
