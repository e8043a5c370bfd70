"""Text normalisers applied before WER.

:func:`english` is Whisper's English normaliser (Radford et al. 2022, "Robust Speech Recognition
via Large-Scale Weak Supervision", appendix C): lower case, drop bracketed text and fillers,
expand contractions, spell numbers and currencies as digits, British -> American spelling,
remove symbols and diacritics, collapse whitespace. It is the ``whisper-normalizer`` package's
port of OpenAI's ``EnglishTextNormalizer`` (the same rules and the same 1,700-entry spelling map);
we call it rather than keep a second copy of those tables. The package is imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache


@lru_cache(maxsize=1)
def _english_normalizer() -> Callable[[str], str]:
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the English WER normaliser needs the whisper-normalizer package "
            "(pip install whisper-normalizer), or score with normalize=None"
        ) from e
    return EnglishTextNormalizer()


def english(text: str) -> str:
    """Whisper's English normalisation of ``text`` (see the module docstring)."""
    return _english_normalizer()(text)


def basic(text: str) -> str:
    """Case and whitespace only: lower case, runs of whitespace -> one space, stripped."""
    return " ".join(text.lower().split())
