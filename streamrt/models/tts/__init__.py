"""Text-to-speech voices loaded offline: the packaged hibari voice (a Kokoro-distilled English
voice, 7.9 MB ONNX, 24 kHz, from the ``hibari-tts`` package, the ``agent`` extra).

``load_tts(name)`` -> a ``TtsVoice``: the shared model that ``streamrt.tasks.tts.TtsModel`` speaks
with. Importing this package reads no files and imports no onnxruntime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["TtsVoice", "load_tts", "DEFAULT_TTS", "PACKAGED_TTS"]

if TYPE_CHECKING:
    from streamrt.models.tts.load import DEFAULT_TTS, PACKAGED_TTS, load_tts
    from streamrt.models.tts.voice import TtsVoice

_WHERE = {"TtsVoice": "streamrt.models.tts.voice", "load_tts": "streamrt.models.tts.load",
          "DEFAULT_TTS": "streamrt.models.tts.load", "PACKAGED_TTS": "streamrt.models.tts.load"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
