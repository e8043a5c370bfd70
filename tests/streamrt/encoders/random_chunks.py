"""Random chunkings of mel input, shared by the streaming-encoder tests: the caches must give the same
window whatever the chunk sizes, alone and in batches of sessions at different positions."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch


def random_spans(rng: np.random.Generator, n: int, max_chunk: int | Sequence[int]) -> Iterator[tuple[int, int, bool]]:
    """(start, end, final) spans covering mel frames [0, n), each 1..max_chunk frames long (a
    sequence: each chunk's bound drawn from it first, so short and long chunks mix)."""
    i = 0
    while i < n:
        bound = max_chunk if isinstance(max_chunk, int) else int(rng.choice(max_chunk))
        k = int(rng.integers(1, bound + 1))
        yield i, i + k, i + k >= n
        i += k


def batch_step(rng: np.random.Generator, mels: Sequence[torch.Tensor], pos: list[int], max_chunk: int,
               join_prob: float = 1.0) -> tuple[list[int], list[torch.Tensor], list[bool]]:
    """One step of a random batch schedule: the sessions with input left (each taking part with
    probability ``join_prob``) get their next 0..max_chunk-1 mel frames (``pos`` advances).
    Returns (session indices, their chunks, whether each chunk is its session's last)."""
    live = [b for b in range(len(mels)) if pos[b] < mels[b].shape[1] and (join_prob >= 1.0 or rng.random() < join_prob)]
    chunks, final = [], []
    for b in live:
        k = int(rng.integers(0, max_chunk))
        chunks.append(mels[b][:, pos[b] : pos[b] + k])
        pos[b] += k
        final.append(pos[b] >= mels[b].shape[1])
    return live, chunks, final
