"""Whisper models loaded offline: packaged CTranslate2 weights converted to transformers, local
Hugging Face checkpoints, or hub ids. See docs/models.md.

``load_whisper(name)`` -> ``WhisperBundle``; ``transcribe_offline(bundle, audio)`` is the greedy
offline reference. Importing this package reads no files and imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["WhisperBundle", "load_whisper", "transcribe_offline", "transcribe_offline_tokens"]

if TYPE_CHECKING:
    from streamrt.models.whisper.bundle import WhisperBundle
    from streamrt.models.whisper.load import load_whisper
    from streamrt.models.whisper.offline import transcribe_offline, transcribe_offline_tokens

_WHERE = {
    "WhisperBundle": "streamrt.models.whisper.bundle",
    "load_whisper": "streamrt.models.whisper.load",
    "transcribe_offline": "streamrt.models.whisper.offline",
    "transcribe_offline_tokens": "streamrt.models.whisper.offline",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
