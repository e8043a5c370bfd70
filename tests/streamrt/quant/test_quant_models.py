"""Quantizing whole transformers models: Whisper (encoder and decoder) and causal LMs.

All models here are randomly initialised from small configs built in the test (no weights are
downloaded or loaded); they check wiring and error size, not transcription quality.
"""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")

from streamrt.quant import PrecisionKnob, quantize  # noqa: E402
from tests.streamrt.random_whisper import random_whisper  # noqa: E402

SCHEME_SETTINGS = {
    "int8-weight-only": {},
    "int8-dynamic": {},
    "int4-weight-only": {"group_size": 32},
    "flexiq": {"group_size": 32, "fraction": 0.5},
}
# relative logits error vs float32 on these random models (documented in docs/quantization.md)
LOGITS_BOUND = {"int8-weight-only": 0.03, "int8-dynamic": 0.05, "int4-weight-only": 0.3, "flexiq": 0.3}


@pytest.fixture(scope="module")
def whisper():
    """A random-init WhisperForConditionalGeneration, 2+2 layers of width 64 (tiny.en is 4+4 x 384)."""
    return random_whisper()


def rel_err(y, ref) -> float:
    return ((y - ref).norm() / ref.norm()).item()


@pytest.mark.parametrize("scheme", list(SCHEME_SETTINGS))
def test_whisper_encoder_and_decoder_quantized_within_bound(whisper, scheme):
    features = torch.randn(2, 80, 100)
    tokens = torch.randint(3, 200, (2, 6))
    with torch.inference_mode():
        reference = whisper(input_features=features, decoder_input_ids=tokens).logits
        model = quantize(copy.deepcopy(whisper), scheme, **SCHEME_SETTINGS[scheme])
        logits = model(input_features=features, decoder_input_ids=tokens).logits
    report = model.quant_report
    linears = [n for n, m in whisper.named_modules() if type(m) is torch.nn.Linear]
    assert report.quantized == tuple(linears) and report.skipped == ()
    assert any(n.startswith("model.encoder.layers") for n in report.quantized)
    assert any(n.startswith("model.decoder.layers") and "encoder_attn" in n for n in report.quantized)
    assert "proj_out" in report.quantized
    err = rel_err(logits, reference)
    assert 1e-5 < err < LOGITS_BOUND[scheme], f"{scheme}: logits relative error {err:.4f}"


def test_whisper_flexiq_knob_moves_error_and_generate_runs(whisper):
    features = torch.randn(1, 80, 100)
    tokens = torch.randint(3, 200, (1, 6))
    model = quantize(copy.deepcopy(whisper), "flexiq", group_size=32)
    knob = PrecisionKnob.of(model)
    errors = []
    with torch.inference_mode():
        reference = whisper(input_features=features, decoder_input_ids=tokens).logits
        for f in (0.0, 0.5, 1.0):
            knob.set(f)
            errors.append(rel_err(model(input_features=features, decoder_input_ids=tokens).logits, reference))
        generated = model.generate(features, max_new_tokens=4, do_sample=False)
    assert errors == sorted(errors) and errors[0] < LOGITS_BOUND["int8-weight-only"]
    assert generated.shape[0] == 1 and generated.shape[1] >= 2


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("scheme", ["int8-dynamic", "int4-weight-only", "flexiq"])
def test_causal_lm_from_config(family, scheme):
    """Random-init LlamaForCausalLM / Qwen2ForCausalLM built from a small config (no weights)."""
    torch.manual_seed(0)
    shape = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    if family == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**shape)).eval()
    else:
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**shape)).eval()
    ids = torch.randint(0, 256, (2, 9))
    with torch.inference_mode():
        reference = model(ids).logits
        quantize(model, scheme, **SCHEME_SETTINGS[scheme])
        logits = model(ids).logits
        generated = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert model.quant_report.skipped == () and "lm_head" in model.quant_report.quantized
    assert 1e-5 < rel_err(logits, reference) < LOGITS_BOUND[scheme]
    assert generated.shape == (2, 12)
