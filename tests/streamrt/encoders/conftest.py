"""A small random-init WhisperEncoder (same code path as the real one, a fraction of the size)."""

from __future__ import annotations

import pytest
import torch


def small_whisper_encoder(max_source_positions: int = 200, seed: int = 0):
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(seed)
    cfg = WhisperConfig(
        d_model=64,
        encoder_layers=2,
        encoder_attention_heads=4,
        encoder_ffn_dim=128,
        num_mel_bins=80,
        max_source_positions=max_source_positions,
        vocab_size=51865,
    )
    return WhisperEncoder(cfg).eval()


@pytest.fixture(scope="session")
def whisper_encoder():
    return small_whisper_encoder()
