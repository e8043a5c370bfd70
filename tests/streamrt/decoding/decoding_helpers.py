"""Decoder drivers only tests need: one stream's greedy decode, and one token per stream through
the batched forward (each checked against transformers by the tests)."""

from __future__ import annotations

from typing import Sequence

import torch

from streamrt.decoding import DecodeRequest, DecodeResult, DecoderCache, IncrementalWhisperDecoder, RepetitionGuard
from streamrt.decoding.batch_state import BatchDecodeState


def greedy(dec: IncrementalWhisperDecoder, cache: DecoderCache, prefix: Sequence[int], *, max_new_tokens: int,
           reuse_prefix_kv: bool = True, guard: RepetitionGuard | None = None) -> DecodeResult:
    """Force ``prefix`` then decode greedily until eot, ``max_new_tokens``, or a repetition loop."""
    return dec.greedy_many([DecodeRequest(cache, prefix, max_new_tokens, reuse_prefix_kv, guard)])[0]


@torch.inference_mode()
def forward_tokens(
    dec: IncrementalWhisperDecoder, caches: Sequence[DecoderCache], ids: Sequence[int], positions: Sequence[int]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One token per stream at its own position, on the streams' own caches (rows [0, position)
    must be valid): (logits (B, vocab), alignment row per stream). Writes each cache's new row."""
    for c, p in zip(caches, positions):
        if p + 1 > c.max_tokens:
            raise ValueError(f"position {p} exceeds the model's {c.max_tokens} decoder positions")
    state = BatchDecodeState(dec, caches, positions, max(positions) + 1)
    idx = torch.as_tensor(list(ids), dtype=torch.long)[:, None]
    pos = torch.as_tensor(list(positions), dtype=torch.long)[:, None]
    x, align = state.forward(idx, pos, torch.ones_like(idx, dtype=torch.bool))
    logits = dec.logits(dec.final_norm(x[:, 0]))
    rows = []
    for b, (c, p) in enumerate(zip(caches, positions)):
        state.write_back(b, c.token_ids[:p] + [int(ids[b])])
        rows.append(align[b, 0, : c.n_frames])
    return logits, rows
