"""Helpers for the real-weight tests: the synthesized sentences, the faster-whisper reference call."""

from __future__ import annotations

import numpy as np
import pytest

# (clip name, synthesizer, voice, words per minute or None, text)
SYNTH = [
    ("espeak_fox", "espeak-ng", "en-us", None, "The quick brown fox jumps over the lazy dog. Streaming speech recognition needs low latency."),
    ("espeak_passport", "espeak-ng", "en-us", None, "Please remember to bring your passport and your ticket to the airport tomorrow morning."),
    ("flite_stella", "flite", "slt", None, "Please call Stella. Ask her to bring these things with her from the store."),
    ("espeak_german", "espeak-ng", "de", 140, "Ich habe heute keine Zeit, weil ich arbeiten muss."),
]


def reference_tokens(fw_model, audio: np.ndarray, *, task: str = "transcribe", language: str | None = None) -> list[int]:
    """faster-whisper greedy tokens, configured as the offline reference is defined."""
    segments, _ = fw_model.transcribe(
        audio,
        beam_size=1,
        temperature=0.0,
        without_timestamps=True,
        condition_on_previous_text=False,
        vad_filter=False,
        no_speech_threshold=None,
        task=task,
        language=language,
    )
    return [t for s in segments for t in s.tokens]


def clip(clips: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in clips:
        pytest.skip(f"clip {name!r} unavailable (moonshine-voice / espeak-ng / flite missing)")
    return clips[name]
