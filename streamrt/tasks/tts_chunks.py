"""Where the next spoken chunk of a growing text ends. The turn's first sentence is spoken clause by
clause so the first audio comes early: its first chunk ends after ``first_chunk_words`` words or at
its first clause boundary, whichever comes first, its next chunks at each clause boundary; later
sentences are spoken whole, and a sentence too long to wait for is cut at its last clause boundary
(else its last space) before ``max_chunk_chars``.

Text arrives piece by piece (LLM tokens), so a boundary counts only once the next character has
arrived: a word is whole once a blank follows it, and "Dr." followed by " Smith" is not a sentence
end, nor is a period before a lowercase word ("e.g. this"). ``final`` (the turn's text is complete)
makes the rest one chunk. Chunks end only at blanks, so they tile the text: joined with single
spaces they give its words in order. Pure functions, no state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streamrt.errors import ConfigError

_SENTENCE_END = re.compile(r"[.!?…]+[\"”’)\]]*(?=\s)|\n")
_CLAUSE_END = re.compile(r"[,;:—–](?=\s)|\s[-–—](?=\s)")
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e"})
_WORD = re.compile(r"\S+")
# words that lean on the next one: a first chunk cut after them ("the", "of") would break a phrase
_LEANING = frozenset("a an the of to in on at for with from by about as into onto than and or but nor if "
                     "that my your his her its our their this these those some any no not very i i'm i'd "
                     "i'll we you they it's there's let's can will would should could be is are".split())
_LEANING_EXTRA_WORDS = 3  # how far past first_chunk_words a first chunk may grow past leaning words


@dataclass(frozen=True)
class ChunkRules:
    """first_chunk_words: the turn's first chunk ends at the blank after this many words (words),
    or after a few more when the last one leans on the next ("the", "of", "and": at most
    3 more), unless a clause boundary or sentence end comes first (None: at the first clause
    boundary of ``first_clause_min_words``, else the first sentence end). first_clause_min_words:
    the turn's first sentence is spoken clause by clause: a chunk in it ends at a clause boundary
    (, ; : and dashes) after at least this many words (words; None: sentences are spoken whole,
    and with ``first_chunk_words`` None too the first chunk is the first sentence).
    max_chunk_chars: a chunk with no sentence end within this many characters is cut before it
    (characters)."""

    first_chunk_words: int | None = 3
    first_clause_min_words: int | None = 1
    max_chunk_chars: int = 300

    def __post_init__(self) -> None:
        for name in ("first_chunk_words", "first_clause_min_words"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be >= 1 word or None, got {v!r}")
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
    None when no chunk is due yet (or nothing but blanks is left). ``text`` is the turn's text from
    its start (its first sentence is the one at 0). ``first``: it is the turn's first chunk.
    ``final``: no more text will come."""
    start = _skip_blank(text, start)
    if start >= len(text):
        return None
    limit = start + rules.max_chunk_chars
    sentence = _sentence_end(text, start, limit, final)  # None: not known yet
    upto = min(len(text), limit, sentence if sentence is not None else len(text))
    cuts = []  # whichever comes first: a clause boundary in the first sentence, the first chunk's words
    if rules.first_clause_min_words is not None and _in_first_sentence(text, start):
        cuts += [_skip_blank(text, m.end()) for m in _CLAUSE_END.finditer(text, start, upto)
                 if len(text[start:m.start()].split()) >= rules.first_clause_min_words and _next_visible(text, m.end())][:1]
    if first and rules.first_chunk_words is not None:
        cuts += [c for c in [_after_words(text, start, upto, rules.first_chunk_words)] if c is not None]
    if cuts:
        return min(cuts)
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


def _in_first_sentence(text: str, at: int) -> bool:
    """Whether position ``at`` is inside the text's first sentence (its end not known before it)."""
    end = _sentence_end(text, 0, len(text) + 1, final=False)
    return end is None or end > at


def _after_words(text: str, start: int, upto: int, words: int) -> int | None:
    """The blank after the ``words``-th whole word from ``start`` (or after up to
    ``_LEANING_EXTRA_WORDS`` more while the last leans on the next), before ``upto``; None when
    those words have not all arrived whole (no blank after them yet)."""
    for k, m in enumerate(_WORD.finditer(text, start, upto), start=1):
        if m.end() >= len(text):
            return None  # the word may go on
        if k < words:
            continue
        leaning = m.group().strip("\"“”'‘’()").lower() in _LEANING
        if not leaning or k >= words + _LEANING_EXTRA_WORDS:
            return _skip_blank(text, m.end())
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
