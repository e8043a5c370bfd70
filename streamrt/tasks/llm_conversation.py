"""A chat with the causal LM as a scheduler task: the user's (partial) transcript in, the reply out.

    decoder = LlmDecoder.from_bundle(bundle, DecoderSettings(max_slots=8))
    model = LlmConversationModel(bundle, decoder)          # shared: weights, KV cache, slots
    sched.add_model(model, name="llm")
    chat = StreamSession(model.create_stream(), clock)
    sched.add(chat, model=model)
    chat.receive(TextDelta("what is the capi"))             # an ASR partial: prefilled ahead
    chat.receive(TextDelta("capital of France?", replace_from=8, end_of_turn=True))  # answer it

Each stream holds one ``Conversation`` of the ``LlmDecoder`` (a KV-cache slot), taken at its first
step and kept across turns. A ``TextDelta`` edits the pending user turn; the context becomes the
chat template of the history plus that turn, set with ``Conversation.set_context`` so only the
tokens after the longest common prefix are prefilled again (a revised partial re-reads its changed
tail, a new turn only itself). ``end_of_turn`` starts the reply. ``step`` runs one
``LlmDecoder.step`` over all given streams (one batched forward); each step's final reply text is
committed as a unit positioned in reply tokens, with the token ids. Text arriving during a reply
interrupts it (barge-in): the reply is cut to what was produced, as ``cancel`` and ``max_new_tokens``
cut it, and the history keeps that; ``ReplyHeard(text)`` then cuts the reply in the history to what
the listener heard. A reply that ends by itself reports ``StepResult.end_of_turn``.
``WithdrawReply`` takes back a reply never delivered (preemptive generation: answered on a
transcript the user then went on with): the reply stops, its output not yet popped is dropped, it
leaves the history, and its turn is open again.

While a user turn is still open (no ``end_of_turn`` yet) its context stops after the user's words
(the template's closing tokens come with the end of the turn), so ``TextDelta(score_end=True)``
can report the model's own probability that the turn ends there (``StepResult.end_of_turn_p``;
the semantic turn-taking policy), reading only the tokens not yet prefilled. With
``score_sentence_end`` (the default) the open turn's words stop before their final punctuation and
the score counts the tokens that end a sentence beside the end-of-turn token: the punctuation is
the ASR's guess (Whisper writes "My budget is not very large, so." at a pause), while the LM's
own probability that a sentence ends after "so" is ~0 (SmolLM2-135M: < 0.001 on every first half
of data/dialogues.yaml's paused turns, 0.04-0.9 on their whole turns; docs/benchmarks.md).

Degradation: when the decoder's model was quantized with FlexiQ (``build_lm(bundle, "flexiq")``), the
model offers the scheduler's ``PrecisionKnob`` protocol (``low_precision_fraction`` /
``set_low_precision_fraction``), so the LLM lane's ladder raises the share of int4 channels under load
and lowers it when load falls, as it does for Whisper. Other precisions offer no knob (empty ladder).

Threads: the scheduler steps in a worker thread while ``accept``/``cancel`` of other streams run on
the event loop, so only ``step`` touches the decoder; a slot given up outside a step (``cancel``,
end of input) is queued and closed at the start of the next step, before any slot is taken.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from streamrt.decoding.llm_batch import Conversation, LlmDecoder
from streamrt.decoding.llm_sampling import RepeatBan, SamplingSettings, WithinWord
from streamrt.engine import StepResult, StreamBase, StreamInput, UnitDraft, Urgency
from streamrt.errors import ConfigError, ModelStepError, StreamrtError
from streamrt.quant.flexiq import PrecisionKnob
from streamrt.types import ReplyHeard, TextDelta, WithdrawReply

if TYPE_CHECKING:
    from streamrt.models.llm.load import LlmBundle

FIRST_TOKEN_PRIORITY = 1  # above ASR streams (0) while they have slack
DECODE_PRIORITY = 0
PREFILL_AHEAD_PRIORITY = -1  # reading a partial turn before it ends: only when nothing else waits


@dataclass(frozen=True)
class ConversationSettings:
    """first_token_budget_ms: a finished user turn's first reply token is due this long after it
    became ready; token_budget_ms: each later token; prefill_ahead_budget_ms: prefilling a partial
    turn before its end (None: the scheduler's ``latency_budget_ms``). sampling: how replies are
    generated (``max_new_tokens`` caps each reply, in tokens). system_prompt: the chat's first
    message (None: the model's template default). score_sentence_end: an open turn is scored on its
    words without their final punctuation, counting the tokens that end a sentence with the
    end-of-turn token (False: the words as the ASR wrote them, the end-of-turn token alone).
    score_with_marks: with ``score_sentence_end``, a turn the ASR ended with a mark ("?", ".") is
    also scored as written (the mark's tokens read in the same step) and the two pooled
    (``pooled_end_p``): the words' score, raised to the geometric mean of both where that is higher.
    reply_no_repeat_tokens: a reply may not write again any run of this many tokens of the chat's
    earlier replies, nor of itself (``RepeatBan``; a token that goes on with a word is never banned,
    so a name can be said again; None: no ban). SmolLM2-135M, greedy, otherwise copies an earlier
    reply, or the fragment of one the user heard before interrupting it, into every later turn, and
    says one sentence over and over ("You're welcome. You're welcome. ...") until the token cap.
    reply_max_token_run: tokens; the same token may not follow itself once a reply wrote it this
    many times in a row (None: no cap). The word exemption lets digits through, and greedy SmolLM2
    writes "1.12222222..." to the cap; 6 lets "1000000" (a million, six zeros) through."""

    first_token_budget_ms: float | None = 300.0
    token_budget_ms: float | None = 1000.0
    prefill_ahead_budget_ms: float | None = 2000.0
    sampling: SamplingSettings = SamplingSettings(max_new_tokens=256)
    system_prompt: str | None = None
    score_sentence_end: bool = True
    score_with_marks: bool = True
    reply_no_repeat_tokens: int | None = None
    reply_max_token_run: int | None = None

    def __post_init__(self) -> None:
        for name in ("first_token_budget_ms", "token_budget_ms", "prefill_ahead_budget_ms"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ConfigError(f"{name} must be > 0 ms or None, got {v!r}")
        n = self.reply_no_repeat_tokens
        if n is not None and (not isinstance(n, int) or n < 2):
            raise ConfigError(f"reply_no_repeat_tokens must be an int >= 2 tokens or None, got {n!r}")
        r = self.reply_max_token_run
        if r is not None and (not isinstance(r, int) or r < 1):
            raise ConfigError(f"reply_max_token_run must be an int >= 1 tokens or None, got {r!r}")


OPTIONS = ("max_new_tokens", "system_prompt")


# a vocabulary entry that ends a sentence: ".", "?", "!" (and runs of them), maybe closing a quote or
# bracket; not ".." (an ellipsis: the speaker trails off)
_SENTENCE_END_TOKEN = re.compile(r"(?!\.\.)[.!?]+[\"')]*")
_END_MARKS = ".!?,;:\u2026"


def sentence_end_tokens(tokenizer: Any) -> tuple[int, ...]:
    """The ids of ``tokenizer``'s (a transformers tokenizer) vocabulary entries that end a sentence."""
    return tuple(sorted(i for tok, i in tokenizer.get_vocab().items() if _SENTENCE_END_TOKEN.fullmatch(tok)))


def without_end_marks(text: str) -> str:
    """``text`` without the punctuation (and spaces) at its end: "so." and "so..." become "so"."""
    return text.rstrip(_END_MARKS + " \t\n")


def pooled_end_p(words_p: float | None, marked_p: float) -> float:
    """The end-of-turn score of an open turn: ``marked_p`` alone when the words were scored without
    marks (``words_p`` None); else the words' score ``words_p`` raised, never lowered, to the
    geometric mean of both readings (a logarithmic opinion pool of the LM without and with the
    ASR's final marks): Whisper writes a final mark where it hears a sentence end, and also at many
    mid-turn pauses, so the mark counts only as far as the words make a sentence end likely.
    After a statement's period the LM often expects another sentence (a low ``marked_p``), which
    is no evidence that the user goes on: hence never lower."""
    if words_p is None:
        return marked_p
    return max(words_p, math.sqrt(words_p * marked_p))


class LlmConversationModel:
    """Shared: the decoder (weights, KV cache, slots) and the chat template. ``create_stream``
    options: ``max_new_tokens`` (tokens per reply), ``system_prompt``.

    ``precision_knob``: the FlexiQ layers of ``decoder.lm`` as one knob, or None when it has none.
    With one, the model offers ``set_low_precision_fraction(f)`` (the scheduler's ``PrecisionKnob``
    protocol; call it between steps only)."""

    def __init__(self, bundle: LlmBundle, decoder: LlmDecoder, settings: ConversationSettings = ConversationSettings()):
        self.bundle = bundle
        self.decoder = decoder
        self.settings = settings
        self._to_close: list[Conversation] = []  # given up outside a step; closed by the next one
        self.steps = 0
        self.precision_knob = PrecisionKnob.find(decoder.lm)
        if self.precision_knob is not None:
            # only a FlexiQ model offers the knob, so the scheduler's ladder only has it then
            self.set_low_precision_fraction = self._set_low_precision_fraction

    @functools.cached_property
    def sentence_end_ids(self) -> tuple[int, ...]:
        """The tokens an end-of-turn score counts beside the end tokens (read at the first score)."""
        return sentence_end_tokens(self.bundle.tokenizer) if self.settings.score_sentence_end else ()

    @functools.cached_property
    def within_word(self) -> WithinWord:
        """The tokens that go on with a word (no space before them), which a repeat ban never bans."""
        return WithinWord(self.bundle.decode)

    @property
    def low_precision_fraction(self) -> float:
        """The share of the LLM's FlexiQ channels in int4 now (0 without a knob)."""
        return 0.0 if self.precision_knob is None else float(self.precision_knob.fraction)

    def _set_low_precision_fraction(self, fraction: float) -> None:
        self.precision_knob.set(fraction)

    def create_stream(self, options: Mapping[str, object] | None = None) -> LlmConversationStream:
        options = dict(options or {})
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"unknown LLM conversation options {unknown}; known: {', '.join(OPTIONS)}")
        settings = self.settings
        if "max_new_tokens" in options:
            settings = replace(settings, sampling=replace(settings.sampling, max_new_tokens=options["max_new_tokens"]))
        if "system_prompt" in options:
            settings = replace(settings, system_prompt=options["system_prompt"])
        return LlmConversationStream(self, settings)

    def release(self, conv: Conversation) -> None:
        """Queue ``conv``'s slot to be freed at the next step boundary (safe during a step)."""
        self._to_close.append(conv)

    def step(self, streams: Sequence[LlmConversationStream]) -> None:
        while self._to_close:
            self.decoder.close(self._to_close.pop())
        for s in streams:  # per-stream failures (no free slot, context too long) before any forward
            try:
                s._prepare()
            except StreamrtError as exc:
                s._drop()  # the session fails: give back what it took
                err = ModelStepError(f"LLM conversation: {exc.message}")
                err.stream = s
                raise err from exc
        self.steps += 1
        outs = self.decoder.step([s.conv for s in streams])
        for s, out in zip(streams, outs):
            s._collect(out)


class LlmConversationStream(StreamBase):
    """One chat: its history, the pending user turn, its ``Conversation`` once it has a slot."""

    input_kinds: ClassVar[frozenset[type]] = frozenset({TextDelta, ReplyHeard, WithdrawReply})

    def __init__(self, model: LlmConversationModel, settings: ConversationSettings):
        self.model = model
        self.settings = settings
        self.conv: Conversation | None = None
        self.history: list[dict[str, str]] = (
            [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt is not None else [])
        self.text = ""  # all user input received (TextDelta positions count in it)
        self._turn_start = 0  # where the pending user turn begins in ``text``
        self._answer = False  # a finished turn waits for (or is in) its reply
        self._replying = False  # the decoder's reply is running
        self._reply_tokens: list[int] = []
        self._reply_text = ""
        self._dirty = False  # the context must be set again from the history and pending turn
        self._finished = False
        self._out: list[UnitDraft] = []
        self._tokens: list[int] = []
        self._score = False  # a score of the open turn's end was asked for
        self._marks = 0  # tokens of the open turn's final marks at the context's end (score_with_marks)
        self._end_p: float | None = None
        self._reply_ended = False
        self._answered_from: int | None = None  # where the turn of the last reply began (WithdrawReply)

    # ---- input (between this stream's steps) ---------------------------------------------------
    def accept(self, item: StreamInput) -> None:
        if isinstance(item, ReplyHeard):
            return self._heard(item.text)
        if isinstance(item, WithdrawReply):
            return self._withdraw()
        if not isinstance(item, TextDelta):
            return super().accept(item)
        text = item.apply(self.text, answered_to=self._turn_start)
        if self._answer and text != self.text:  # the user speaks over the reply (or before it began)
            self._interrupt(keep=item.replace_from is None or item.replace_from >= len(self.text))
        self.text = text
        self._dirty = True
        if item.end_of_turn:
            self._answer = True
        elif item.score_end and not self._answer:
            self._score = True

    def _heard(self, heard: str) -> None:
        """The listener heard ``heard`` of the latest reply: stop it and keep only that. A turn that
        waits for its reply is closed too, its reply empty (the same however far the reply got)."""
        if self._replying:
            self.conv.stop_reply()
            self._end_reply()
        elif self._answer:
            self._end_reply()
        if self.history and self.history[-1]["role"] == "assistant":
            self.history[-1] = {"role": "assistant", "content": heard}
            self._dirty = True

    def _withdraw(self) -> None:
        """Take back the latest reply (never delivered): stop it, drop its output not yet popped,
        and reopen its turn, taking it out of the history if it had ended."""
        if self._answer:  # waiting for its reply, or in it
            if self._replying:
                self.conv.stop_reply()
            self._answer = self._replying = False
            self._reply_tokens, self._reply_text = [], ""
        elif self._answered_from is not None and len(self.text) == self._turn_start:  # it ended, nothing since
            del self.history[-2:]
            self._turn_start, self._answered_from = self._answered_from, None
        else:
            return
        self._out, self._tokens, self._reply_ended = [], [], False
        self._dirty = True

    def _interrupt(self, keep: bool) -> None:
        """New words after the turn (``keep``): the reply ends where it got to and stays in the
        history. A revision of the turn itself: the reply to the old words is forgotten (what was
        already delivered stays delivered) and the revised turn is answered afresh at its end."""
        if self._replying:
            self.conv.stop_reply()
            if keep:
                self._end_reply()
            else:
                self._replying = False
                self._reply_tokens, self._reply_text = [], ""
        self._answer = False

    def input_finished(self) -> None:
        self._finished = True
        if not self._answer and self.conv is not None:
            self.model.release(self.conv)
            self.conv = None

    def cancel(self) -> None:
        super().cancel()
        if self.conv is not None:
            if self._replying:
                self.conv.stop_reply()
                self._end_reply()
            self.model.release(self.conv)
            self.conv = None
        self._answer = False

    # ---- state ---------------------------------------------------------------------------------
    def is_ready(self) -> bool:
        if self.cancelled or (self._finished and not self._answer):
            return False
        if self._answer or self._score:
            return True
        # a partial turn to prefill ahead of its end (one token is kept back for the reply)
        return (self._dirty and len(self.text) > self._turn_start) or (self.conv is not None and self.conv.pending > 1)

    def is_done(self) -> bool:
        return self.cancelled or (self._finished and not self._answer)

    def urgency(self) -> Urgency:
        if (self._answer and not self._reply_tokens) or (self._score and not self._answer):
            # a reply's first token, or a turn-taking score the dialogue waits on: both interactive
            return Urgency(self.settings.first_token_budget_ms, FIRST_TOKEN_PRIORITY)
        if self._answer:
            return Urgency(self.settings.token_budget_ms, DECODE_PRIORITY)
        return Urgency(self.settings.prefill_ahead_budget_ms, PREFILL_AHEAD_PRIORITY)

    def pop_result(self) -> StepResult:
        out = StepResult(self._out, None, self._tokens, end_of_turn=self._reply_ended, end_of_turn_p=self._end_p)
        self._out, self._tokens, self._reply_ended, self._end_p = [], [], False, None
        return out

    # ---- inside model.step ---------------------------------------------------------------------
    def _context(self) -> list[int]:
        """The chat's tokens: history and the pending turn (with the reply's prompt once answered).
        An open turn stops after the user's words; with ``score_sentence_end`` the score reads them
        without their final marks, and with ``score_with_marks`` the marks follow them in the
        context (``_marks``: how many tokens they are; 0 when none or not split off cleanly)."""
        turn = self.text[self._turn_start:]
        self._marks = 0
        if self._answer or not self.settings.score_sentence_end:
            return self._chat(turn)
        words = self._chat(without_end_marks(turn))  # the ASR's guess: the score asks the LM whether it ends here
        if not self.settings.score_with_marks or without_end_marks(turn) == turn:
            return words
        written = self._chat(turn)
        if len(written) > len(words) and written[:len(words)] == words:
            self._marks = len(written) - len(words)
            return written
        return words

    def _chat(self, turn: str) -> list[int]:
        ids = self.model.bundle.chat_ids(self.history + [{"role": "user", "content": turn}],
                                         add_generation_prompt=self._answer)
        if not self._answer:  # an open turn: stop after the user's words, before the closing tokens
            ends = set(self.model.decoder.end_tokens)
            last = max((i for i, t in enumerate(ids) if t in ends), default=None)
            if last is not None:
                ids = ids[:last]
        return ids

    def _prepare(self) -> None:
        """Take a slot, set the context, start the reply: what may fail for this stream alone."""
        if self.conv is None:
            self.conv = self.model.decoder.open()  # LimitExceeded names max_slots
            self._dirty = True
        if self._dirty and not self._replying:
            self.conv.set_context(self._context())
            self._dirty = False
        if self._answer and not self._replying:
            self.conv.start_reply(self.settings.sampling, self.model.decoder.end_tokens, ban=self._repeat_ban())
            self._replying = True
            self._score = False
        elif self._score and not self._answer:
            self.conv.score_end = True
            self.conv.score_tokens = self.model.sentence_end_ids
            self.conv.score_before = self._marks

    def _repeat_ban(self) -> RepeatBan | None:
        n, run = self.settings.reply_no_repeat_tokens, self.settings.reply_max_token_run
        if n is None and run is None:
            return None
        said = [self.model.bundle.encode(m["content"]) for m in self.history if m["role"] == "assistant"]
        return RepeatBan.of(said, n, exempt=self.model.within_word, within_reply=True, max_token_run=run)

    def _drop(self) -> None:
        """Inside a step, after this stream's preparation failed: close its slot, do no more."""
        self.cancelled = True
        self._answer = self._replying = False
        if self.conv is not None:
            self.conv.stop_reply()
            self.model.decoder.close(self.conv)
            self.conv = None

    def _collect(self, out) -> None:
        if out.end_probability is not None:
            self._end_p, self._score = pooled_end_p(out.end_probability_before, out.end_probability), False
        if out.tokens:
            at = len(self._reply_tokens)
            self._reply_tokens += out.tokens
            self._tokens += out.tokens
            if out.text:
                self._out.append(UnitDraft(out.text, float(at), float(len(self._reply_tokens)), float(at)))
            self._reply_text += out.text
        if out.finished is not None:
            self._end_reply()
            self._reply_ended = True
            if self._finished:
                self.model.decoder.close(self.conv)  # inside the step: free it now
                self.conv = None

    def _end_reply(self) -> None:
        """The reply is over (finished, interrupted or cancelled): the turn and what was said join
        the history; the next context re-reads them through the template (a cut reply is closed)."""
        self.history += [{"role": "user", "content": self.text[self._turn_start:]},
                         {"role": "assistant", "content": self._reply_text}]
        self._turn_start, self._answered_from = len(self.text), self._turn_start
        self._answer = self._replying = False
        self._reply_tokens, self._reply_text = [], ""
        self._dirty = True
