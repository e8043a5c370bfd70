"""What a decode is asked and what it gives back, shared by the decoder and its batch loops
(``batch_greedy``, ``beam_search``) in a module of their own so that none imports another's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from streamrt.decoding.kv_cache import DecoderCache
from streamrt.decoding.repetition import RepetitionGuard

if TYPE_CHECKING:
    from streamrt.decoding.beam_search import BeamSettings


@dataclass
class DecodeRequest:
    """One stream's decode: force ``prefix`` into ``cache``, then up to ``max_new_tokens``."""

    cache: DecoderCache
    prefix: Sequence[int]
    max_new_tokens: int
    reuse_prefix_kv: bool = True
    guard: RepetitionGuard | None = None
    # a test on a generated token's alignment row: True stops this decode after that token
    # (``Policy.stop_rule``; stopped_by "policy")
    stop: Callable[[torch.Tensor], bool] | None = None
    # the batched token loop's iterations this stream takes part in (None: no limit); past them it
    # stops with stopped_by "iterations", its tokens kept: the next decode verifies them as its
    # draft and goes on from there
    max_iterations: int | None = None
    # beam search instead of greedy (``beam_search``; None or beam_size 1: greedy)
    beam: "BeamSettings | None" = None



@dataclass(frozen=True)
class DecodeResult:
    """tokens: generated ids (eot excluded); logprobs: their log-probabilities; attention:
    (len(tokens), n_frames) alignment-head attention of each token; ended: eot was produced;
    stopped_by: None, "eot", "max_tokens", "repetition", "policy" (``DecodeRequest.stop``) or
    "iterations" (``DecodeRequest.max_iterations``; the next decode goes on from these tokens); beam
    search also "beam" (enough hypotheses ended, this live one ranked best: patience below 1)."""

    tokens: list[int]
    logprobs: list[float]
    attention: np.ndarray
    ended: bool
    stopped_by: str | None
