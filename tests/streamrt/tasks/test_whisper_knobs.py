"""Degradation knobs of WhisperStreamingModel (chunk, policy stride, FlexiQ precision) and the
validation that runs before a step mutates any stream (docs/scheduler.md, failure isolation)."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from streamrt.errors import ConfigError
from streamrt.quant.precision import resolve_precision
from streamrt.scheduler.degradation import Degradation
from streamrt.tasks.whisper_hypothesis import decode_request
from streamrt.tasks.whisper_knobs import StreamStepError
from streamrt.tasks.whisper_stream_state import Word
from streamrt.tasks.whisper_stream import WhisperStreamingModel, WhisperStreamSettings
from tests.streamrt.tasks.conftest import EOT, N_MELS, NO_TS, SOT, ReencodeStandIn, ToyFeatures, ToyTokenizer

SR = 16000


def _audio(seconds, seed=0):
    return np.random.default_rng(seed).standard_normal(int(seconds * SR)).astype(np.float32) * 0.1


def _bundle(model):
    return SimpleNamespace(
        model=model, tokenizer=ToyTokenizer(), name="toy", multilingual=False, n_mels=N_MELS,
        sot=SOT, eot=EOT, no_timestamps=NO_TS, transcribe=83, translate=84, no_speech=85,
        timestamp_begin=91, language_ids={}, suppress_tokens=(), alignment_heads=((1, 0), (1, 1)),
        sot_sequence=lambda task="transcribe", language=None: [SOT],
    )


def test_set_chunk_ms_changes_the_audio_the_next_step_consumes(make_streaming):
    model = make_streaming(chunk_ms=500)
    s = model.create_stream()
    s.accept_audio(_audio(4.0))
    model.step([s])
    assert s.consumed_ms == 500
    model.set_chunk_ms(1000)
    assert model.chunk_ms == 1000
    model.step([s])
    assert s.consumed_ms == 1500
    with pytest.raises(ConfigError):
        model.set_chunk_ms(0)


def test_default_ladder_has_chunk_and_stride_but_no_precision_without_flexiq(make_streaming):
    model = make_streaming(chunk_ms=500)
    ladder = Degradation.for_model(model)
    assert [s.method for s in ladder.steps] == ["set_chunk_ms", "set_chunk_ms", "set_policy_stride"]
    ladder.set_level(model, 3)
    assert model.chunk_ms == 2000 and model.policy_stride == 2
    ladder.set_level(model, 0)
    assert model.chunk_ms == 500 and model.policy_stride == 1


def test_the_token_loop_cap_grows_with_the_audio_a_decode_covers(make_streaming):
    model = make_streaming(chunk_ms=500, max_loop_iterations=3)
    s = model.create_stream()
    s.accept_audio(_audio(1.0))
    assert model.loop_iterations() == 3 and decode_request(model, s).max_iterations == 3
    model.set_chunk_ms(1000)  # twice the words per decode: twice the iterations
    assert model.loop_iterations() == 6 and decode_request(model, s).max_iterations == 6
    model.set_policy_stride(2)
    assert model.loop_iterations() == 12
    model.set_chunk_ms(500)
    model.set_policy_stride(1)
    assert model.loop_iterations() == 3
    model.set_chunk_ms(250)  # never below the configured cap
    assert model.loop_iterations() == 3
    assert make_streaming(chunk_ms=500).loop_iterations() is None


def test_policy_stride_decodes_every_kth_step_only(make_streaming, monkeypatch):
    model = make_streaming(chunk_ms=500)
    s = model.create_stream()
    s.accept_audio(_audio(3.0))
    decoded = []
    real = model.decoder.greedy_many

    def counting(requests):
        decoded.append(len(requests))
        return real(requests)

    monkeypatch.setattr(model.decoder, "greedy_many", counting)
    model.set_policy_stride(2)
    for _ in range(4):
        model.step([s])
    assert s.consumed_ms == 2000  # every step still takes its chunk
    assert len(decoded) == 2  # but only every second one decodes
    model.set_policy_stride(1)
    model.step([s])
    assert len(decoded) == 3
    s.input_finished()
    model.step([s])  # the final step always decodes and commits everything
    assert len(decoded) == 4 and s.is_done()
    with pytest.raises(ConfigError):
        model.set_policy_stride(0)


def test_step_validates_every_stream_before_mutating_any(make_streaming):
    model = make_streaming(chunk_ms=500)
    other = make_streaming(chunk_ms=500)
    good, foreign = model.create_stream(), other.create_stream()
    for st in (good, foreign):
        st.accept_audio(_audio(1.0))
    with pytest.raises(StreamStepError) as info:
        model.step([good, foreign])
    assert info.value.stream is foreign and info.value.code == "model_error"
    assert good.consumed_ms == 0 and foreign.consumed_ms == 0  # nobody was touched
    model.step([good])  # the scheduler's retry of the rest
    assert good.consumed_ms == 500


def test_a_prefix_too_long_for_the_decoder_is_reported_with_its_stream(make_streaming):
    model = make_streaming(chunk_ms=500)
    ok, bad = model.create_stream(), model.create_stream()
    for st in (ok, bad):
        st.accept_audio(_audio(1.0))
    bad.window_words = [Word("", [SOT] * model.decoder.max_tokens, 0.0, 0.0)]  # a forced prefix too long
    with pytest.raises(StreamStepError) as info:
        model.step([ok, bad])
    assert info.value.stream is bad and "positions" in str(info.value)
    assert ok.consumed_ms == 0


@pytest.fixture
def flexiq_streaming(tiny_model):
    from streamrt.quant import PrecisionKnob, quantize

    model = quantize(copy.deepcopy(tiny_model), "flexiq", group_size=32)
    knob = PrecisionKnob.of(model)
    settings = WhisperStreamSettings(chunk_ms=500, max_window_s=5.8, forced_keep_s=2.0, trim_after_s=3.0)
    return WhisperStreamingModel(_bundle(model), ReencodeStandIn(model), ToyFeatures, settings,
                                 encoder_mode="stand-in", precision_knob=knob,
                                 precision=resolve_precision("flexiq"))


def test_flexiq_model_offers_the_precision_knob_and_still_streams(flexiq_streaming):
    model = flexiq_streaming
    assert model.decoder.proj is None  # the vocabulary projection is the quantized module
    ladder = Degradation.for_model(model)
    assert [s.method for s in ladder.steps][:2] == ["set_low_precision_fraction"] * 2
    s = model.create_stream()
    s.accept_audio(_audio(2.0))
    model.step([s])
    assert model.low_precision_fraction == 0.0
    ladder.set_level(model, 2)  # between steps, as the scheduler does
    assert model.low_precision_fraction == 1.0
    assert model.precision_knob.applied_fraction() > 0.9
    model.step([s])
    s.input_finished()
    while s.is_ready():
        model.step([s])
    assert s.is_done() and s.pop_result().committed
    ladder.set_level(model, 0)
    assert model.low_precision_fraction == 0.0


def test_precision_knob_changes_the_decoder_output(flexiq_streaming):
    model = flexiq_streaming
    h = torch.randn(3, model.decoder.d_model)
    model.set_low_precision_fraction(0.0)
    a = model.decoder.logits(h)
    model.set_low_precision_fraction(1.0)
    b = model.decoder.logits(h)
    assert not torch.allclose(a, b)
    model.set_low_precision_fraction(0.0)
    assert torch.equal(model.decoder.logits(h), a)


@pytest.mark.model
@pytest.mark.slow
def test_tiny_en_flexiq_streams_a_recording_with_the_knob_turned_mid_stream():
    mv = pytest.importorskip("moonshine_voice")
    from pathlib import Path

    from streamrt.audio import load_audio

    audio = load_audio(Path(mv.__file__).parent / "assets" / "beckett.wav")
    model = WhisperStreamingModel.from_pretrained("tiny.en", encoder_mode="block-causal", chunk_ms=1000,
                                                  quantize="flexiq")
    assert model.describe()["quantize"] == "flexiq"
    s = model.create_stream({"policy": "local-agreement"})
    words = []
    for i, a in enumerate(range(0, len(audio), SR)):
        s.accept_audio(audio[a : a + SR])
        if i == 3:
            model.set_low_precision_fraction(1.0)
        while s.is_ready():
            model.step([s])
        words += [u.text for u in s.pop_result().committed]
    s.input_finished()
    while s.is_ready():
        model.step([s])
    words += [u.text for u in s.pop_result().committed]
    text = " ".join(words).lower()
    assert "fail" in text and "again" in text, text
