"""Full-sequence reference passes: what a cached encoder must reproduce, computed the plain way.

``whisper_full_pass`` runs transformers' own Whisper modules (conv1, conv2, embed_positions, each
``WhisperEncoderLayer.forward`` with an additive attention mask, layer_norm) over a whole mel sequence
of any length; with ``Full()`` and 3000 frames it is ``WhisperEncoder.forward``. Used by the tests and to
measure what a mode's mask costs in quality (decode the same audio with each pattern).
"""

from __future__ import annotations

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
