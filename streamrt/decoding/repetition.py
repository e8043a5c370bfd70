"""Guards against Whisper's repetition loops (the decoder repeating one n-gram until the token cap).

Two checks, both cheap enough to run after every generated token:

- ``RepetitionGuard.check``: the tail of the token list is one n-gram (n <= ``max_ngram``) repeated
  more than ``max_repeats`` times in a row -> decoding stops and the loop is cut back to its first
  occurrence.
- ``compression_ratio``: Whisper's own heuristic (zlib ratio of the text; > 2.4 means repetitive).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass


@dataclass(frozen=True)
class RepetitionGuard:
    """max_ngram: longest n-gram (tokens) looked for; max_repeats: consecutive copies allowed
    (a fourth consecutive copy of the same 1..max_ngram-gram stops decoding with the defaults)."""

    max_ngram: int = 12
    max_repeats: int = 3

    def check(self, tokens: list[int]) -> int | None:
        """Return the length to cut ``tokens`` to when its tail is a loop, else None."""
        n_tok = len(tokens)
        for n in range(1, self.max_ngram + 1):
            copies = self.max_repeats + 1
            if n * copies > n_tok:
                break
            tail = tokens[n_tok - n :]
            if all(tokens[n_tok - (c + 1) * n : n_tok - c * n] == tail for c in range(1, copies)):
                # keep one copy: the loop's first occurrence
                return n_tok - (copies - 1) * n
        return None


def compression_ratio(text: str) -> float:
    """len(utf-8 bytes) / len(zlib-compressed bytes); Whisper treats > 2.4 as a repetition loop."""
    data = text.encode("utf-8")
    if not data:
        return 0.0
    return len(data) / len(zlib.compress(data))
