"""The quant benchmark measures the computation it names (random-init tiny Whisper from a config;
no weights are loaded, nothing is timed)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from streamrt.bench.quant import _DecoderStep, _encoder_chunk, format_table  # noqa: E402
from tests.streamrt.random_whisper import random_whisper  # noqa: E402


@pytest.fixture(scope="module")
def whisper():
    return random_whisper(vocab_size=120)


def test_encoder_chunk_on_a_full_window_equals_the_encoder(whisper):
    mel = torch.randn(1, 80, 100)
    with torch.inference_mode():
        full = whisper.model.encoder(mel).last_hidden_state
        assert torch.allclose(_encoder_chunk(whisper.model.encoder, mel), full, atol=1e-5)


def test_decoder_step_reset_keeps_the_cache_length(whisper):
    enc = torch.randn(1, 50, 64)
    with torch.inference_mode():
        step = _DecoderStep(whisper, enc, [1, 5, 6, 7], batch=3)
        first = step()
        step.reset()
        assert step.cache.get_seq_length() == 3
        assert torch.equal(step(), first) and first.shape == (3, 120)
        full = whisper(encoder_outputs=(enc.expand(3, -1, -1),), decoder_input_ids=torch.tensor([[1, 5, 6, 7]] * 3)).logits
        assert torch.allclose(first, full[:, -1], atol=1e-4)


def test_format_table_lists_every_row():
    row = {"decoder_step": {"median_ms": 2.0, "min_ms": 1.5}, "logits_rel_err": 0.01, "top1_agree": True}
    result = {"config": {"threads": 1, "batch": 1, "context_tokens": 16, "chunk_frames": 50},
              "weights": "w", "torch": "2", "cpu_capability": "AVX512", "load_average": (1.0, 1.0, 1.0),
              "rows": {"fp32": {"decoder_step": {"median_ms": 3.0, "min_ms": 2.5}}, "int8-dynamic": row}}
    table = format_table(result)
    assert "| fp32 | 3.00 / 2.50 | - |" in table and "| int8-dynamic | 2.00 / 1.50 | - | - | 0.01 | yes |" in table
