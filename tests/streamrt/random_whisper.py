"""Small randomly initialised Whisper models for tests that need no packaged weights."""

from __future__ import annotations

import torch

DEFAULTS = dict(
    vocab_size=200, num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
    max_source_positions=50, max_target_positions=32, pad_token_id=0, bos_token_id=1,
    eos_token_id=2, decoder_start_token_id=1,
)


def random_whisper(seed: int = 0, **config):
    """A random-init ``WhisperForConditionalGeneration`` in eval mode; ``config`` overrides DEFAULTS
    (2+2 layers of width 64; tiny.en is 4+4 x 384)."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    return WhisperForConditionalGeneration(WhisperConfig(**{**DEFAULTS, **config})).eval()
