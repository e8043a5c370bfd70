"""Token choice and stop handling for the causal-LM decoder: greedy, temperature + top-p, stop strings.

Pure functions and small value types; the random generator is injected (one per conversation), so a
seeded conversation samples the same tokens alone or batched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Container, Iterable, Mapping

import torch

from streamrt.errors import ConfigError


@dataclass(frozen=True)
class SamplingSettings:
    """How one reply is generated.

    temperature: 0 = greedy (argmax); otherwise logits are divided by it before sampling.
    top_p: nucleus sampling, the smallest set of tokens whose probability sums to at least this (0..1].
    max_new_tokens: tokens generated at most for this reply (None: until an end token, a stop
        string or the context limit).
    stop_strings: the reply ends when its text contains one of these; the text returned stops before it.
    end_tokens: token ids that end the reply (the model's end-of-turn); None = the model's own.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int | None = 256
    stop_strings: tuple[str, ...] = ()
    end_tokens: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.max_new_tokens is not None and (not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1):
            raise ConfigError(f"max_new_tokens must be an int >= 1 tokens or None, got {self.max_new_tokens!r}")
        if isinstance(self.stop_strings, str) or not all(isinstance(s, str) and s for s in self.stop_strings):
            raise ConfigError(f"stop_strings must be a tuple of non-empty strings, got {self.stop_strings!r}")


@dataclass(frozen=True)
class RepeatBan:
    """What a reply may not write: its logit set to -inf before each token is chosen.

    - Runs of ``n`` tokens of ``sequences`` (e.g. the chat's earlier replies: a small model otherwise
      copies its last reply into every later one): after the reply's own last ``n - 1`` tokens, each
      token that followed them in ``sequences`` is banned (``follows``).
    - With ``within_reply``, runs of ``n`` tokens of the reply itself, as transformers'
      ``no_repeat_ngram_size`` (SmolLM2 greedy otherwise says "You're welcome." until the token cap):
      kept per reply by ``ReplyRepeats``, one entry per token written, never rescanned.
    - Tokens in ``exempt`` never complete a banned run, in either table (e.g. those that go on with
      a word: a reply may say "Colosseum" again, and the ban falls on the next word).
    - ``max_token_run`` (tokens; None: no cap): the same token may not follow itself once it has been
      written this many times in a row. The exemption lets digits through ("1.1222222..."), so this
      is what stops a reply stuck on one token.
    ``n`` None: no run is banned (only the cap)."""

    n: int | None
    follows: Mapping[tuple[int, ...], frozenset[int]] = field(default_factory=dict)
    exempt: Container[int] = frozenset()
    within_reply: bool = False
    max_token_run: int | None = None

    @classmethod
    def of(cls, sequences: Iterable[list[int]], n: int | None, exempt: Container[int] = frozenset(), *,
           within_reply: bool = False, max_token_run: int | None = None) -> RepeatBan:
        if n is not None and (not isinstance(n, int) or n < 2):
            raise ConfigError(f"a repeat ban needs runs of n >= 2 tokens, got {n!r}")
        if max_token_run is not None and (not isinstance(max_token_run, int) or max_token_run < 1):
            raise ConfigError(f"max_token_run must be an int >= 1 tokens or None, got {max_token_run!r}")
        follows: dict[tuple[int, ...], set[int]] = {}
        for seq in sequences if n is not None else ():
            for i in range(len(seq) - n + 1):
                if int(seq[i + n - 1]) not in exempt:
                    follows.setdefault(tuple(seq[i:i + n - 1]), set()).add(int(seq[i + n - 1]))
        return cls(n, {k: frozenset(v) for k, v in follows.items()}, exempt, within_reply and n is not None,
                   max_token_run)

    def banned(self, reply: list[int]) -> frozenset[int]:
        """The tokens that would complete a banned run of ``sequences`` after ``reply`` (the reply's
        tokens so far); ``ReplyRepeats.banned`` adds the reply's own runs and the token cap."""
        if self.n is None or len(reply) < self.n - 1:
            return frozenset()
        return self.follows.get(tuple(reply[len(reply) - self.n + 1:]), frozenset())


class ReplyRepeats:
    """One reply's ban as it is written (``Reply`` holds one per conversation slot): the rule's runs
    of earlier text, plus the reply's own runs, recorded as each token is written (``wrote``: O(n)
    per token, the table grows by one entry at most), plus the length of the run of its last token."""

    def __init__(self, rule: RepeatBan):
        self.rule = rule
        self.own: dict[tuple[int, ...], set[int]] = {}
        self.run = 0  # how many times in a row the reply's last token was written

    def banned(self, reply: list[int]) -> frozenset[int]:
        """The tokens the next one after ``reply`` (the reply's tokens so far) may not be."""
        rule, out = self.rule, self.rule.banned(reply)
        if rule.within_reply and len(reply) >= rule.n - 1:
            own = self.own.get(tuple(reply[len(reply) - rule.n + 1:]))
            if own:
                out = out | own
        if rule.max_token_run is not None and self.run >= rule.max_token_run:
            out = out | {reply[-1]}
        return out

    def wrote(self, reply: list[int]) -> None:
        """``reply``'s last token was just written (``reply``: all its tokens so far)."""
        token, n = reply[-1], self.rule.n
        self.run = self.run + 1 if len(reply) > 1 and reply[-2] == token else 1
        if self.rule.within_reply and len(reply) >= n and token not in self.rule.exempt:
            self.own.setdefault(tuple(reply[len(reply) - n:-1]), set()).add(token)


class WithinWord:
    """A ``Container`` of token ids: those whose text starts with a letter or digit, i.e. goes on
    with the word before it (no space). Read from the tokenizer one token at a time, when first
    asked, and remembered (the model's, shared by its conversations)."""

    def __init__(self, decode: Callable[[list[int]], str]):
        self._decode = decode
        self._known: dict[int, bool] = {}

    def __contains__(self, token: object) -> bool:
        if not isinstance(token, int):
            return False
        known = self._known.get(token)
        if known is None:
            known = self._known[token] = self._decode([token])[:1].isalnum()
        return known


def choose_token(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator | None) -> int:
    """One token from one row of float32 logits ``(vocab,)``."""
    if settings.temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / settings.temperature, dim=-1)
    if settings.top_p < 1:
        sorted_p, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # mass of the tokens ranked above each
        sorted_p = torch.where(before < settings.top_p, sorted_p, torch.zeros_like(sorted_p))
        return int(order[torch.multinomial(sorted_p, 1, generator=generator)])
    return int(torch.multinomial(probs, 1, generator=generator))


def split_stop(text: str, stop_strings: tuple[str, ...]) -> tuple[str, bool, int]:
    """``(safe, stopped, held)``: the text up to the first stop string (``stopped``), else the text
    minus a tail that could still grow into a stop string or an unfinished character (``held``
    characters kept back until the next token decides)."""
    cut = min((i for i in (text.find(s) for s in stop_strings) if i >= 0), default=-1)
    if cut >= 0:
        return text[:cut], True, 0
    held = 0
    for s in stop_strings:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                held = max(held, n)
                break
    if text.endswith("\ufffd"):  # a multi-byte character split across tokens
        held = max(held, len(text) - len(text.rstrip("\ufffd")))
    return text[: len(text) - held], False, held


def lookup_draft(tokens: list[int], max_tokens: int, ngram: int = 3, window: int = 1024) -> list[int]:
    """Prompt-lookup drafting: the tokens that followed the latest earlier occurrence of the context's
    last ``ngram`` tokens (tried down to 2) within the last ``window`` tokens; at most ``max_tokens``,
    empty when nothing matches. Dialogue answers often reuse the user's words."""
    if max_tokens < 1:
        return []
    start = max(0, len(tokens) - window)
    for n in range(ngram, 1, -1):
        if len(tokens) <= n:
            continue
        tail = tokens[-n:]
        for i in range(len(tokens) - n - 1, start - 1, -1):
            if tokens[i: i + n] == tail:
                return tokens[i + n: i + n + max_tokens]
    return []
