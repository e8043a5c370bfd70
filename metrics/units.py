"""Reference lengths |Y| in a latency unit, with each reference tool's exact conventions.

SimulEval 1.1.4 (``LogInstance.reference_length``) counts
- ``word``: ``len(reference.split(" "))``: split on single spaces, so "" has length 1 and a
  double space adds an empty word;
- ``char``: ``len(reference.strip())``: inner spaces count as characters;
- ``spm``: the number of SentencePiece pieces of the reference (needs the target spm model).
OmniSTEval 0.1.10 uses the same rules on the stripped reference (its loaders strip it).
"""

from __future__ import annotations

from typing import Protocol


class PieceEncoder(Protocol):
    """What an ``spm`` unit needs: SentencePieceProcessor.encode(text, out_type=str)."""

    def encode(self, text: str, out_type: type) -> list[str]: ...


def load_spm(model_path: str) -> PieceEncoder:
    """Load a SentencePiece model (needs the optional ``sentencepiece`` package)."""
    try:
        import sentencepiece
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the 'spm' latency unit needs the sentencepiece package") from e
    return sentencepiece.SentencePieceProcessor(model_file=str(model_path))


def reference_length(reference: str, unit: str, spm: PieceEncoder | None = None) -> int:
    """|Y| of ``reference`` in ``unit`` exactly as SimulEval counts it (see the module docstring)."""
    if unit == "word":
        return len(reference.split(" "))
    if unit == "char":
        return len(reference.strip())
    if unit == "spm":
        if spm is None:
            raise ValueError("the 'spm' latency unit needs a SentencePiece model (spm_model=...)")
        return len(spm.encode(reference, out_type=str))
    raise ValueError(f"unknown latency unit {unit!r}; expected word, char or spm")
