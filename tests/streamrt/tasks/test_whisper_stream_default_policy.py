"""A stream whose client names no policy gets the model's configured one (the preset's)."""

from types import SimpleNamespace

import torch

from streamrt.quant.precision import resolve_precision
from streamrt.tasks.whisper_stream import WhisperStreamingModel, WhisperStreamSettings
from tests.streamrt.tasks.conftest import EOT, N_MELS, NO_TS, SOT, ReencodeStandIn, ToyFeatures, ToyTokenizer


def _model(tiny_model, **kw) -> WhisperStreamingModel:
    bundle = SimpleNamespace(
        model=tiny_model, tokenizer=ToyTokenizer(), name="toy", multilingual=False, n_mels=N_MELS,
        sot=SOT, eot=EOT, no_timestamps=NO_TS, transcribe=83, translate=84, no_speech=85,
        timestamp_begin=91, language_ids={}, suppress_tokens=(), alignment_heads=((1, 0), (1, 1)),
        sot_sequence=lambda task="transcribe", language=None: [SOT],
    )
    settings = WhisperStreamSettings(chunk_ms=500, max_window_s=5.8, forced_keep_s=2.0, trim_after_s=3.0)
    return WhisperStreamingModel(bundle, ReencodeStandIn(tiny_model), ToyFeatures, settings, encoder_mode="stand-in", **kw)


def test_streams_without_a_policy_get_the_configured_one_with_its_options(tiny_model):
    model = _model(tiny_model, default_policy=("alignatt", {"frames": 16}), preset="balanced")
    assert type(model.create_stream().policy).__name__ == "AlignAtt"
    assert model.create_stream().policy.frames == 16
    # the client's options go on top of the configured ones; another policy starts from its defaults
    assert model.create_stream({"policy_options": {"frames": 4}}).policy.frames == 4
    assert model.create_stream({"policy": "alignatt", "policy_options": {"frames": 6}}).policy.frames == 6
    assert type(model.create_stream({"policy": "local-agreement"}).policy).__name__ == "LocalAgreement"
    d = model.describe()
    assert d["preset"] == "balanced" and d["default_policy"] == "alignatt" and d["default_policy_options"] == {"frames": 16}


def test_the_model_reports_its_precision_and_why(tiny_model):
    d = _model(tiny_model).describe()
    assert d["precision"] == "fp32" and d["quantize"] is None and d["precision_reason"] == "fp32: asked for"
    assert d["cpu_capability"] == resolve_precision("fp32").cpu.label


def test_a_bfloat16_precision_keeps_the_decoder_cross_attention_in_bfloat16(tiny_model):
    model = _model(tiny_model, precision=resolve_precision("bf16"))
    assert model.decoder.cross_dtype == torch.bfloat16
    assert _model(tiny_model).decoder.cross_dtype == torch.float32
