"""Whisper tokenizer over a ``tokenizer.json`` (the ``tokenizers`` library) and its special ids.

Special ids are read from the file's ``added_tokens`` by content, never assumed: English-only
models have end-of-text 50256 / start 50257 / no-timestamps 50362, multilingual ones
50257 / 50258 / 50363. Timestamp tokens (``<|0.00|>`` ... ``<|30.00|>``, 0.02 s apart) follow
no-timestamps; some tokenizer.json files list them and some do not, so their text is computed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from streamrt.errors import ModelLoadError

TIMESTAMP_STEP_S = 0.02
_LANGUAGE = re.compile(r"^<\|([a-z]{2,3}|haw|yue)\|>$")


@dataclass(frozen=True)
class SpecialIds:
    eot: int
    sot: int
    translate: int
    transcribe: int
    sot_lm: int
    sot_prev: int
    no_speech: int
    no_timestamps: int
    language_ids: dict[str, int]  # every <|xx|> token between sot and translate, in id order

    @property
    def timestamp_begin(self) -> int:
        return self.no_timestamps + 1


def read_special_ids(tokenizer_json: str | Path) -> SpecialIds:
    """Special ids from tokenizer.json's ``added_tokens``; ModelLoadError names a missing one."""
    path = Path(tokenizer_json)
    try:
        added = json.loads(path.read_text(encoding="utf-8"))["added_tokens"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{path}: cannot read added_tokens from the tokenizer: {exc}") from exc
    by_text = {tok["content"]: int(tok["id"]) for tok in added}

    def need(*names: str) -> int:
        for name in names:
            if name in by_text:
                return by_text[name]
        raise ModelLoadError(f"{path}: tokenizer has no {' / '.join(names)} token")

    ids = dict(
        eot=need("<|endoftext|>"),
        sot=need("<|startoftranscript|>"),
        translate=need("<|translate|>"),
        transcribe=need("<|transcribe|>"),
        sot_lm=need("<|startoflm|>"),
        sot_prev=need("<|startofprev|>"),
        no_speech=need("<|nospeech|>", "<|nocaptions|>"),
        no_timestamps=need("<|notimestamps|>"),
    )
    languages = {
        m.group(1): i
        for text, i in sorted(by_text.items(), key=lambda kv: kv[1])
        if ids["sot"] < i < ids["translate"] and (m := _LANGUAGE.match(text))
    }
    return SpecialIds(**ids, language_ids=languages)


class WhisperTokenizer:
    """Text <-> ids. Build with ``WhisperTokenizer.from_file(path_to_tokenizer_json)``."""

    def __init__(self, tokenizer, special: SpecialIds, vocab_size: int):
        self._tok = tokenizer
        self.special = special
        self.vocab_size = vocab_size

    @classmethod
    def from_file(cls, tokenizer_json: str | Path, vocab_size: int) -> WhisperTokenizer:
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(tokenizer_json))
        except Exception as exc:  # the tokenizers library raises plain Exception
            raise ModelLoadError(f"{tokenizer_json}: not a readable tokenizer.json: {exc}") from exc
        return cls(tok, read_special_ids(tokenizer_json), vocab_size)

    def encode(self, text: str) -> list[int]:
        """Text tokens only (no start/end tokens). A leading space is part of the first word."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids, skip_special: bool = True) -> str:
        """Join tokens into text; with ``skip_special`` every id >= end-of-text is dropped."""
        ids = [int(i) for i in ids]
        if skip_special:
            return self._tok.decode([i for i in ids if i < self.special.eot], skip_special_tokens=False)
        parts: list[str] = []
        run: list[int] = []
        for i in ids:
            if i < self.special.eot:
                run.append(i)
                continue
            if run:
                parts.append(self._tok.decode(run, skip_special_tokens=False))
                run = []
            parts.append(self.token_text(i))
        if run:
            parts.append(self._tok.decode(run, skip_special_tokens=False))
        return "".join(parts)

    def token_text(self, token_id: int) -> str:
        """The text of one token: ``"<|0.42|>"`` for timestamps, ``"<|en|>"`` etc. for specials.

        A token holding part of a multi-byte character decodes to U+FFFD here; use
        ``token_bytes`` where exact bytes matter.
        """
        token_id = int(token_id)
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(f"token id {token_id} is outside the vocabulary of {self.vocab_size}")
        if token_id >= self.special.timestamp_begin:
            return f"<|{(token_id - self.special.timestamp_begin) * TIMESTAMP_STEP_S:.2f}|>"
        if token_id >= self.special.eot:
            return self._tok.id_to_token(token_id) or ""
        return self._tok.decode([token_id], skip_special_tokens=False)

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes a text token stands for (GPT-2 byte-level alphabet undone)."""
        piece = self._tok.id_to_token(int(token_id))
        if piece is None or int(token_id) >= self.special.eot:
            return self.token_text(token_id).encode("utf-8")
        return bytes(_BYTE_DECODER[c] for c in piece)


def _byte_decoder() -> dict[str, int]:
    # GPT-2's reversible byte <-> printable-character table.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


_BYTE_DECODER = _byte_decoder()
