"""Continuous batching for the causal-LM decoder: conversations join and leave at any step.

    decoder = LlmDecoder.from_bundle(load_llm("smollm2-135m"), DecoderSettings(max_slots=16))
    conv = decoder.open()                                  # takes a KV-cache slot
    conv.set_context(bundle.chat_ids(messages))            # reuses the longest common prefix
    conv.start_reply(SamplingSettings(max_new_tokens=64))
    while not done:
        for out in decoder.step([conv, ...]):              # one batched forward for all of them
            print(out.text, end="")                         # out.tokens, out.finished
    decoder.close(conv)                                    # frees the slot

A ``Conversation`` is plain state (its tokens, how many of them are in its cache slot, the reply in
progress); the model and the cache are shared and owned by the decoder. Each ``step`` runs one
forward: first one decode row per replying conversation, then prefill chunks of the others under
``prefill_tokens_per_step`` (decode-first, so running replies keep their token rate while a long
prompt is read in pieces). Editing a conversation (``append``, ``truncate``, ``set_context``) only
moves its length: positions past it are overwritten by the next prefill.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from streamrt.decoding.causal_lm import CausalLM, KVCache
from streamrt.decoding.llm_sampling import (RepeatBan, ReplyRepeats, SamplingSettings, choose_token, lookup_draft,
                                            split_stop)
from streamrt.errors import ConfigError, InputError, LimitExceeded

FINISH_REASONS = ("end_token", "stop_string", "max_new_tokens", "context_full", "stopped")
CACHE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class DecoderSettings:
    """Limits of one decoder (units in the names; the KV cache is allocated once from them).

    max_slots: conversations resident at once (each holds one KV-cache slot).
    max_context_tokens: tokens per conversation (prompt, history and reply together).
    prefill_tokens_per_step: rows one step may run, decode rows first; prompts are prefilled in
        chunks of what is left. Must exceed max_slots so that prefill always makes progress.
    cache_dtype: "float32" or "bfloat16" keys and values.
    draft_tokens: prompt-lookup speculative decoding for greedy replies: up to this many tokens per
        step drafted from the conversation's own earlier tokens and verified in the same forward
        (the reply's tokens are exactly greedy's); the draft length adapts to what was accepted.
        None disables it.
    """

    max_slots: int = 16
    max_context_tokens: int = 2048
    prefill_tokens_per_step: int = 256
    cache_dtype: str = "float32"
    draft_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_slots", "max_context_tokens", "prefill_tokens_per_step"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        if self.prefill_tokens_per_step <= self.max_slots:
            raise ConfigError(f"prefill_tokens_per_step ({self.prefill_tokens_per_step} tokens) must exceed "
                              f"max_slots ({self.max_slots}), or prefill could starve behind decode rows")
        if self.draft_tokens is not None and (not isinstance(self.draft_tokens, int) or self.draft_tokens < 1):
            raise ConfigError(f"draft_tokens must be an int >= 1 tokens or None, got {self.draft_tokens!r}")
        if self.cache_dtype not in CACHE_DTYPES:
            raise ConfigError(f"cache_dtype must be one of {sorted(CACHE_DTYPES)}, got {self.cache_dtype!r}")


@dataclass
class Reply:
    """A reply being generated: its settings, its random generator and what it produced so far."""

    settings: SamplingSettings
    generator: torch.Generator | None
    end_tokens: frozenset[int]
    repeats: ReplyRepeats | None = None  # the reply's ban and what it wrote (None: no ban)
    tokens: list[int] = field(default_factory=list)
    text_sent: str = ""
    draft_len: int = 4  # adapted: one more after a fully accepted draft, else what was accepted
    drafted: int = 0
    accepted: int = 0


@dataclass(eq=False)
class Conversation:
    """One conversation's state. ``tokens[:cached]`` have keys and values in slot ``slot``."""

    slot: int
    max_tokens: int
    tokens: list[int] = field(default_factory=list)
    cached: int = 0
    reply: Reply | None = None
    score_end: bool = False
    """Set by the caller: the next step reads the context to its end (no token kept back for a reply)
    and reports ``StepOutput.end_probability``, the probability that the next token is one of the
    decoder's end tokens or of ``score_tokens`` (a turn-taking policy's end-of-turn score); then it
    clears the flag."""
    score_tokens: tuple[int, ...] = ()
    """Counted in ``end_probability`` beside the end tokens (e.g. the tokens that end a sentence,
    when the context stops before the writer's final punctuation)."""
    score_before: int = 0
    """With ``score_end``: also report ``StepOutput.end_probability_before``, the same probability
    after all but the context's last ``score_before`` tokens (the words before the writer's final
    punctuation); those tokens are read again if they were already."""

    @property
    def pending(self) -> int:
        return len(self.tokens) - self.cached

    def append(self, ids: list[int]) -> None:
        """Add tokens at the end (a user's words, a tool result); they are prefilled by later steps."""
        self._check_idle("append")
        if len(self.tokens) + len(ids) > self.max_tokens:
            raise LimitExceeded("max_context_tokens", self.max_tokens, len(self.tokens) + len(ids), "tokens",
                                what="conversation context")
        self.tokens.extend(int(i) for i in ids)

    def truncate(self, length: int) -> None:
        """Cut the context back to its first ``length`` tokens (an ASR revision, an interrupted reply
        cut to what was heard). Nothing is recomputed: the cache before ``length`` stays valid."""
        self._check_idle("truncate")
        if not 0 <= length <= len(self.tokens):
            raise InputError(f"truncate to {length} tokens: the conversation has {len(self.tokens)}")
        del self.tokens[length:]
        self.cached = min(self.cached, length)

    def set_context(self, ids: list[int]) -> int:
        """Make the context ``ids``, keeping the longest common prefix with the current one (a new turn
        of the same chat prefills only its new tokens). Returns how many tokens were kept."""
        keep = 0
        for a, b in zip(self.tokens, ids):
            if a != b:
                break
            keep += 1
        self.truncate(keep)
        self.append(ids[keep:])
        return keep

    def start_reply(self, settings: SamplingSettings, end_tokens: tuple[int, ...] = (),
                    generator: torch.Generator | None = None, ban: RepeatBan | None = None) -> None:
        """Generate after the current context; ``step`` returns the reply's tokens and text. ``ban``:
        runs of tokens the reply may not write."""
        self._check_idle("start a reply")
        if not self.tokens:
            raise InputError("a reply needs at least one context token")
        ends = settings.end_tokens if settings.end_tokens is not None else end_tokens
        self.reply = Reply(settings, generator, frozenset(ends), ReplyRepeats(ban) if ban is not None else None)

    def stop_reply(self) -> None:
        """End the reply in progress (barge-in); its tokens so far stay in the context."""
        self.reply = None

    def _check_idle(self, what: str) -> None:
        if self.reply is not None:
            raise InputError(f"cannot {what} while a reply is being generated; stop_reply() first")


@dataclass(frozen=True)
class StepOutput:
    """What one step did for one conversation: tokens chosen, text that became final, and why the
    reply ended (one of FINISH_REASONS) or None while it goes on. ``rows``: its tokens the forward ran."""

    conversation: Conversation
    tokens: tuple[int, ...] = ()
    text: str = ""
    finished: str | None = None
    rows: int = 0
    end_probability: float | None = None
    end_probability_before: float | None = None


class LlmDecoder:
    """The shared model and KV cache; conversations are opened on it and stepped together."""

    def __init__(self, lm: CausalLM, decode: Callable[[list[int]], str], end_tokens: tuple[int, ...],
                 settings: DecoderSettings = DecoderSettings()):
        self.lm = lm
        self.decode = decode
        self.end_tokens = tuple(end_tokens)
        self.settings = settings
        self.cache: KVCache = lm.new_cache(settings.max_slots, settings.max_context_tokens,
                                           CACHE_DTYPES[settings.cache_dtype])
        self._free = list(range(settings.max_slots))

    @classmethod
    def from_bundle(cls, bundle, settings: DecoderSettings = DecoderSettings(), lm: CausalLM | None = None) -> LlmDecoder:
        """A decoder on ``bundle`` (an ``LlmBundle``); ``lm`` reuses an existing (e.g. quantized) model."""
        return cls(lm or CausalLM.from_hf(bundle.model), bundle.decode, bundle.end_token_ids, settings)

    def open(self) -> Conversation:
        if not self._free:
            raise LimitExceeded("max_slots", self.settings.max_slots, self.settings.max_slots + 1, "conversations",
                                what="open conversations")
        self._free.sort()  # lowest slot first: active slots stay contiguous, attended without a copy
        return Conversation(self._free.pop(0), self.settings.max_context_tokens)

    def close(self, conv: Conversation) -> None:
        """Free the conversation's slot (its state is dropped)."""
        if conv.slot in self._free:
            raise InputError(f"conversation in slot {conv.slot} is already closed")
        self._free.append(conv.slot)
        conv.reply = None

    def step(self, convs: list[Conversation]) -> list[StepOutput]:
        """One forward over ``convs``; one output per conversation, in order (empty when it had nothing
        to do or waited for prefill budget)."""
        decode, prefill = [], []
        for conv in convs:
            reads_all = conv.reply is not None or conv.score_end  # to the context's last token
            if reads_all and conv.pending == 0 and conv.tokens:
                conv.cached -= 1  # truncated to a cached length: rerun the last token for its logits
            if conv.reply is None and conv.score_end and conv.score_before:
                # the row before the last score_before tokens must be in this step too
                conv.cached = max(0, min(conv.cached, len(conv.tokens) - 1 - conv.score_before))
            if conv.reply is not None and conv.pending == 1:
                decode.append(conv)
            elif conv.pending > (0 if reads_all else 1):
                prefill.append(conv)
        segments, feed, lengths, samplers, row = [], [], {}, [], 0
        for conv in decode:
            draft = self._draft(conv)
            segments.append((conv.slot, conv.cached, 1 + len(draft)))
            feed += [conv.tokens[conv.cached], *draft]
            lengths[id(conv)] = 1 + len(draft)
            samplers.append((conv, row, draft))
            row += 1 + len(draft)
        budget = self.settings.prefill_tokens_per_step - row
        scored = []  # (conv, row of its last context token)
        for conv in prefill:
            if budget <= 0:
                break
            reads_all = conv.reply is not None or conv.score_end
            want = conv.pending if reads_all else conv.pending - 1  # keep one for the reply
            n = min(want, budget)
            budget -= n
            segments.append((conv.slot, conv.cached, n))
            feed += conv.tokens[conv.cached: conv.cached + n]
            lengths[id(conv)] = n
            row += n
            if conv.reply is not None and n == conv.pending:
                samplers.append((conv, row - 1, []))
            elif conv.reply is None and conv.score_end and n == conv.pending:
                scored.append((conv, row - 1))
        if not segments:
            return [StepOutput(c) for c in convs]
        out_rows = [r + i for _, r, draft in samplers for i in range(1 + len(draft))]
        for conv, r in scored:
            out_rows += [r - conv.score_before, r] if conv.score_before else [r]
        plan = self.lm.plan(segments, self.cache)
        with torch.inference_mode():
            logits = self.lm(torch.tensor(feed), plan, self.cache, torch.tensor(out_rows, dtype=torch.long))
        for conv in decode:
            conv.cached += 1  # its pending token; accepted draft tokens are counted in _verify
        for conv in prefill:
            conv.cached += lengths.get(id(conv), 0)
        chosen, at = {}, 0
        for conv, _, draft in samplers:
            chosen[id(conv)] = self._verify(conv, logits[at: at + 1 + len(draft)], draft)
            at += 1 + len(draft)
        for conv, _ in scored:
            ends = sorted(set(self.end_tokens) | set(conv.score_tokens))
            before = None
            if conv.score_before:
                before = float(torch.softmax(logits[at].float(), dim=-1)[ends].sum())
                at += 1
            probs = torch.softmax(logits[at].float(), dim=-1)
            chosen[id(conv)] = StepOutput(conv, end_probability=float(probs[ends].sum()), end_probability_before=before)
            conv.score_end = False
            at += 1
        outputs = []
        for conv in convs:
            rows = lengths.get(id(conv), 0)
            out = chosen.get(id(conv))
            outputs.append(replace(out, rows=rows) if out is not None else StepOutput(conv, rows=rows))
        return outputs

    def _draft(self, conv: Conversation) -> list[int]:
        limit, reply = self.settings.draft_tokens, conv.reply
        if limit is None or reply.settings.temperature != 0:
            return []
        room = conv.max_tokens - len(conv.tokens) - 1
        if reply.settings.max_new_tokens is not None:
            room = min(room, reply.settings.max_new_tokens - len(reply.tokens) - 1)
        return lookup_draft(conv.tokens, min(limit, reply.draft_len, room))

    def _verify(self, conv: Conversation, logits: torch.Tensor, draft: list[int]) -> StepOutput:
        """Choose tokens row by row; a drafted token whose choice matched is kept (its keys and values,
        written this step, are valid), and the first mismatch (or the row after the draft) gives the
        step's last token. Without a draft: one token, as plain decoding."""
        reply = conv.reply
        tokens, text, finished, accepted = [], "", None, 0
        for i in range(len(draft) + 1):
            out = self._advance(conv, logits[i])
            tokens += out.tokens
            text += out.text
            finished = out.finished
            if finished is not None or i == len(draft) or out.tokens[0] != draft[i]:
                break
            conv.cached += 1
            accepted += 1
        if draft:
            reply.drafted += len(draft)
            reply.accepted += accepted
            reply.draft_len = reply.draft_len + 1 if accepted == len(draft) else max(1, accepted)
        return StepOutput(conv, tuple(tokens), text, finished)

    def _advance(self, conv: Conversation, logits: torch.Tensor) -> StepOutput:
        reply = conv.reply
        banned = reply.repeats.banned(reply.tokens) if reply.repeats is not None and reply.tokens else ()
        if banned:
            logits = logits.clone()
            logits[list(banned)] = float("-inf")
        token = choose_token(logits, reply.settings, reply.generator)
        conv.tokens.append(token)
        reply.tokens.append(token)
        if reply.repeats is not None:
            reply.repeats.wrote(reply.tokens)
        finished = None
        if token in reply.end_tokens:
            finished = "end_token"
        elif reply.settings.max_new_tokens is not None and len(reply.tokens) >= reply.settings.max_new_tokens:
            finished = "max_new_tokens"
        elif len(conv.tokens) >= conv.max_tokens:
            finished = "context_full"
        body = reply.tokens[:-1] if finished == "end_token" else reply.tokens
        safe, stopped, _ = split_stop(self.decode(body), reply.settings.stop_strings)
        if stopped:
            finished = "stop_string"
        elif finished is not None:
            safe = self.decode(body)  # flush what was held back
        text = safe[len(reply.text_sent):]
        reply.text_sent = safe
        if finished is not None:
            conv.reply = None
        return StepOutput(conv, (token,), text, finished)
