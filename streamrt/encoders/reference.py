"""Full-sequence reference passes: what a cached encoder must reproduce, computed the plain way.

``whisper_full_pass`` runs transformers' own Whisper modules (conv1, conv2, embed_positions, each
``WhisperEncoderLayer.forward`` with an additive attention mask, layer_norm) over a whole mel sequence
of any length; with ``Full()`` and 3000 frames it is ``WhisperEncoder.forward``. Used by the tests and to
measure what a mode's mask costs in quality (decode the same audio with each pattern).
``lookahead_pass`` is the same for the block-lookahead mode, whose frozen blocks no single mask gives.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from streamrt.encoders.base import AttentionPattern, pattern_mask
from streamrt.encoders.whisper import whisper_encoder_module


@torch.inference_mode()
def whisper_full_pass(whisper_model: nn.Module, mel: torch.Tensor, pattern: AttentionPattern) -> torch.Tensor:
    """(n_mels, M) mel -> (ceil(M / 2), d_model) encoder frames under ``pattern`` (window positions 0..)."""
    enc = whisper_encoder_module(whisper_model)
    x = F.gelu(enc.conv1(mel[None]))
    x = F.gelu(enc.conv2(x))[0].T
    n = x.shape[0]
    if n > enc.embed_positions.num_embeddings:
        raise ValueError(f"{n} frames exceed Whisper's {enc.embed_positions.num_embeddings} positions")
    h = (x + enc.embed_positions.weight[:n])[None]
    allowed = pattern_mask(pattern, n)
    additive = torch.zeros(n, n).masked_fill(~allowed, torch.finfo(torch.float32).min)[None, None]
    for layer in enc.layers:
        h = layer(h, additive)
        h = h[0] if isinstance(h, tuple) else h
    return enc.layer_norm(h)[0]


@torch.inference_mode()
def lookahead_pass(
    whisper_model: nn.Module, mel: torch.Tensor | None, step_ends: Sequence[int], chunk_frames: int,
    left_frames: int | None, lookahead_frames: int, final: bool = True, conv_out: torch.Tensor | None = None,
    trim_first: bool = False,
) -> torch.Tensor:
    """The window a block-lookahead stream holds (streamrt.encoders.lookahead) after steps that left it
    ``step_ends`` frames long (the last one with ``final``), replayed group by group with transformers'
    ``WhisperEncoderLayer.forward``: each layer runs over the frozen frames' inputs to that layer
    (``left_frames`` back) followed by the group, and keeps the group's rows. ``mel`` must cover
    ``step_ends[-1]`` conv outputs (a stream emits a frame once its mel exists); or pass the conv
    outputs themselves as ``conv_out`` (T, d_model), e.g. the frames a trim kept. ``trim_first``: the
    first step is a trim's re-encode (one group over all its frames)."""
    from streamrt.encoders.lookahead import plan_groups

    enc = whisper_encoder_module(whisper_model)
    x = conv_out if conv_out is not None else F.gelu(enc.conv2(F.gelu(enc.conv1(mel[None]))))[0].T
    x = x + enc.embed_positions.weight[: x.shape[0]]
    frozen_in: list[list[torch.Tensor]] = [[] for _ in enc.layers]  # per layer: its inputs, frozen rows
    frozen_out: list[torch.Tensor] = []
    tail = x[:0]
    f = 0
    for s, n in enumerate(step_ends):
        max_freeze = n if trim_first and s == 0 else chunk_frames
        for g in plan_groups(f, n, max_freeze, lookahead_frames, final and s == len(step_ends) - 1):
            h = x[g.start : g.end]
            lo = max(0, g.start - left_frames) if left_frames is not None else 0
            for li, layer in enumerate(enc.layers):
                frozen_in[li].append(h[: g.freeze])
                context = torch.cat(frozen_in[li])[lo : g.start]
                y = layer(torch.cat([context, h])[None], None)
                h = (y[0] if isinstance(y, tuple) else y)[0, context.shape[0] :]
            frozen_out.append(h[: g.freeze])
            tail = h[g.freeze :]
            f = g.start + g.freeze
    return enc.layer_norm(torch.cat(frozen_out + [tail]))
