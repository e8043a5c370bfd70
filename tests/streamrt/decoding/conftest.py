"""A tiny random-weight Whisper (no packaged weights needed) for decoder tests."""

import pytest

from tests.streamrt.random_whisper import random_whisper


@pytest.fixture(scope="session")
def tiny_whisper():
    return random_whisper(
        vocab_size=96, num_mel_bins=8, d_model=32, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=60, max_target_positions=40, pad_token_id=80, bos_token_id=81,
        eos_token_id=80, decoder_start_token_id=81,
    )
