"""Causal language models loaded offline: the packaged SmolLM2 GGUF (dequantized once by transformers
and cached as safetensors) or any local Hugging Face causal-LM folder. See docs/models.md.

``load_llm(name)`` -> ``LlmBundle``. Importing this package reads no files and imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["LlmBundle", "load_llm"]

if TYPE_CHECKING:
    from streamrt.models.llm.load import LlmBundle, load_llm

_WHERE = {"LlmBundle": "streamrt.models.llm.load", "load_llm": "streamrt.models.llm.load"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
