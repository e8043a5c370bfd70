"""Real packaged weights: the converted models decode token for token like CTranslate2 does.

The reference is faster-whisper on the very same model.bin (float32, greedy, no timestamps, no
temperature fallback, no previous-text conditioning, no VAD, no no-speech skipping).
"""

from __future__ import annotations

import re

import pytest
import torch

from streamrt.models.whisper import transcribe_offline, transcribe_offline_tokens
from streamrt.models.whisper.offline import detect_language, encode_window, log_mel_recording
from tests.streamrt.models.model_refs import clip, reference_tokens

pytestmark = pytest.mark.model

TINY_EN_PARAMETERS = 37_760_256  # the figure checked in /work/shared/notes/ct2-format.md
GERMAN_WORDS = {"ich", "habe", "heute", "keine", "zeit", "weil", "arbeiten", "muss", "und", "das", "ist"}
ENGLISH_WORDS = {"i", "you", "we", "have", "has", "the", "to", "a", "because", "and", "is", "are", "no", "not", "time", "work", "if", "then", "of", "go"}


def test_tiny_en_conversion(tiny_bundle):
    model = tiny_bundle.model
    assert model.num_parameters() == TINY_EN_PARAMETERS
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight  # tied
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    cfg = model.config
    assert (cfg.d_model, cfg.encoder_layers, cfg.decoder_layers, cfg.encoder_attention_heads) == (384, 4, 4, 6)
    assert (cfg.vocab_size, cfg.num_mel_bins, cfg.max_source_positions, cfg.max_target_positions) == (51864, 80, 1500, 448)
    assert not tiny_bundle.multilingual and tiny_bundle.eot == 50256 and tiny_bundle.sot == 50257
    assert tiny_bundle.alignment_heads == ((1, 0), (2, 0), (2, 5), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4))


@pytest.mark.parametrize(
    "name",
    ["beckett", pytest.param("two_cities", marks=pytest.mark.slow), "espeak_fox", "espeak_passport", "flite_stella"],
)
def test_tiny_en_greedy_tokens_match_ctranslate2(tiny_bundle, tiny_reference, speech_clips, name):
    audio = clip(speech_clips, name)
    ours = [t for window in transcribe_offline_tokens(tiny_bundle, audio) for t in window]
    assert ours == reference_tokens(tiny_reference, audio)
    assert len(ours) > 5


def test_tiny_en_text_of_a_known_recording(tiny_bundle, speech_clips):
    text = transcribe_offline(tiny_bundle, clip(speech_clips, "beckett"))
    assert text == "Ever tried, ever failed. No matter, try again. Fail again. Fail better."


def test_base_is_multilingual(base_bundle):
    assert base_bundle.multilingual and (base_bundle.eot, base_bundle.sot, base_bundle.no_timestamps) == (50257, 50258, 50363)
    assert base_bundle.model.config.d_model == 512 and base_bundle.model.config.vocab_size == 51865
    assert base_bundle.sot_sequence("translate", "de") == [50258, 50261, 50358, 50363]
    assert base_bundle.alignment_heads[0] == (3, 1) and len(base_bundle.alignment_heads) == 8


def test_base_transcribes_english_like_ctranslate2(base_bundle, base_reference, speech_clips):
    audio = clip(speech_clips, "beckett")
    ours = [t for w in transcribe_offline_tokens(base_bundle, audio, language="en") for t in w]
    assert ours == reference_tokens(base_reference, audio, language="en")
    assert "try again" in base_bundle.tokenizer.decode(ours).lower()


def test_base_detects_the_language(base_bundle, speech_clips):
    for name, code in (("beckett", "en"), ("espeak_german", "de")):
        window = log_mel_recording(clip(speech_clips, name), base_bundle.n_mels)[:, :3000]
        window = torch.nn.functional.pad(window, (0, 3000 - window.shape[1]))
        assert detect_language(base_bundle, encode_window(base_bundle, window)) == code, name


def test_base_translates_german_into_english(base_bundle, base_reference, speech_clips):
    audio = clip(speech_clips, "espeak_german")
    ours = [t for w in transcribe_offline_tokens(base_bundle, audio, task="translate", language="de") for t in w]
    assert ours == reference_tokens(base_reference, audio, task="translate", language="de")
    words = set(re.findall(r"[a-zäöüß']+", base_bundle.tokenizer.decode(ours).lower()))
    assert len(words & ENGLISH_WORDS) >= 3 and not words & GERMAN_WORDS, words
    same_audio_transcribed = transcribe_offline(base_bundle, audio, language="de").lower()
    assert "ich habe heute keine zeit" in same_audio_transcribed


def test_english_only_model_refuses_translation(tiny_bundle, speech_clips):
    from streamrt.errors import ConfigError

    with pytest.raises(ConfigError, match="English-only"):
        transcribe_offline(tiny_bundle, clip(speech_clips, "beckett"), task="translate")
