"""Where the next spoken chunk of a growing text ends: at a sentence end, or, for the first chunk of
a turn, at the first clause boundary after a few words (the first audio comes after the first
clause, not the whole sentence), or, in a sentence too long to wait for, at its last clause
boundary (else its last space) before ``max_chunk_chars``.

Text arrives piece by piece (LLM tokens), so a boundary counts only once the next non-blank
character has arrived: "Dr." followed by " Smith" is not a sentence end, and neither is a period
before a lowercase word ("e.g. this"). ``final`` (the turn's text is complete) makes the rest one
chunk. Pure functions, no state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streamrt.errors import ConfigError

_SENTENCE_END = re.compile(r"[.!?…]+[\"”’)\]]*(?=\s)|\n")
_CLAUSE_END = re.compile(r"[,;:—–](?=\s)|\s[-–—](?=\s)")
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e"})


@dataclass(frozen=True)
class ChunkRules:
    """first_clause_min_words: the first chunk of a turn ends at the first clause boundary (, ; : and
    dashes) after at least this many words (None: at sentence ends only). max_chunk_chars: a chunk
    with no sentence end within this many characters is cut before it (characters)."""

    first_clause_min_words: int | None = 4
    max_chunk_chars: int = 300

    def __post_init__(self) -> None:
        if self.first_clause_min_words is not None and self.first_clause_min_words < 1:
            raise ConfigError(f"first_clause_min_words must be >= 1 word or None, got {self.first_clause_min_words}")
        if self.max_chunk_chars < 20:
            raise ConfigError(f"max_chunk_chars must be >= 20 characters, got {self.max_chunk_chars}")


def _ends_sentence(text: str, end: int, nxt: str) -> bool:
    """Whether the punctuation ending at ``end`` ends a sentence, given the next non-blank ``nxt``."""
    if text[end - 1] == "\n":
        return True
    if nxt.islower():
        return False
    if text[end - 1] != ".":
        return True
    word = text[text.rfind(" ", 0, end) + 1: end - 1].lstrip("(\"“'‘").lower()
    return word not in _ABBREVIATIONS and not (len(word) == 1 and word.isalpha())


def _next_visible(text: str, at: int) -> str | None:
    m = re.compile(r"\S").search(text, at)
    return m.group() if m else None


def _skip_blank(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def next_chunk_end(text: str, start: int, *, first: bool, final: bool, rules: ChunkRules = ChunkRules()) -> int | None:
    """End (exclusive, past the blanks after it) of the chunk of ``text`` that starts at ``start``;
    None when no chunk is due yet (or nothing but blanks is left). ``first``: it is the turn's first
    chunk. ``final``: no more text will come."""
    start = _skip_blank(text, start)
    if start >= len(text):
        return None
    limit = start + rules.max_chunk_chars
    sentence = _sentence_end(text, start, limit, final)  # None: not known yet
    if first and rules.first_clause_min_words is not None:
        upto = min(len(text), limit, sentence if sentence is not None else len(text))
        for m in _CLAUSE_END.finditer(text, start, upto):
            if len(text[start:m.start()].split()) >= rules.first_clause_min_words and _next_visible(text, m.end()):
                return _skip_blank(text, m.end())
    if sentence is not None:
        return sentence
    if final and len(text) <= limit:
        return len(text)
    if len(text) > limit:  # too long to wait for its end: cut at a clause, else a space
        window = text[start:limit]
        cuts = [m.end() for m in _CLAUSE_END.finditer(window)] or [m.start() for m in re.finditer(r"\s", window)]
        cut = start + (cuts[-1] if cuts and cuts[-1] > 0 else len(window))
        return _skip_blank(text, cut)
    return None


def _sentence_end(text: str, start: int, limit: int, final: bool) -> int | None:
    """End (past the blanks) of the sentence starting at ``start``, if it ends before ``limit``
    and is known to end there."""
    for m in _SENTENCE_END.finditer(text, start):
        if m.end() > limit:
            return None
        nxt = _next_visible(text, m.end())
        if nxt is None:
            return len(text) if final else None  # else wait for the next character
        if _ends_sentence(text, m.end(), nxt):
            return _skip_blank(text, m.end())
    return None
