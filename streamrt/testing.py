"""Tiny deterministic models for testing transports, sessions and the scheduler without weights.

``CountingModel`` "recognizes" one word per ``word_ms`` of audio: the i-th word is ``w{i}`` and
spans [i*word_ms, (i+1)*word_ms). A step consumes up to ``chunk_ms`` of audio; a word is committed
once ``hold_ms`` of audio past its end has been consumed (or at end of stream), and the next
uncommitted word is the partial. It implements the ``streamrt.engine`` protocols exactly as a real
model does, so code tested with it runs unchanged with Whisper.

``EchoTextModel`` is the text counterpart (an LLM stand-in): a stream takes ``TextDelta``s, and once
a turn ends it "answers" with the turn's words, one token per step (unit texts to append, as an
LLM's: " w1" after the first word; the answer's last step reports ``end_of_turn``); the reply's first token is more
urgent than the rest (``Urgency``). A stream holds one of the model's ``slots`` (as a KV-cache slot)
from its first token until its reply is out or it is cancelled. ``WithdrawReply`` takes the latest
answer back (its words not yet popped are dropped) and reopens its turn, as the LLM conversation does.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np

from streamrt.engine import SampleCounts, StepResult, StreamBase, StreamInput, UnitDraft, Urgency
from streamrt.errors import ModelStepError
from streamrt.types import AudioChunk, Finalize, StepPending, TextDelta, WithdrawReply


class CountingStream(SampleCounts):
    input_kinds = frozenset({AudioChunk, StepPending, Finalize})

    def __init__(self, model: "CountingModel"):
        self.model = model
        self._received = 0  # samples
        self._consumed = 0
        self._finished = False
        self._next_word = 0
        self._pending: list[UnitDraft] = []
        self._partial: str | None = None

    def accept_audio(self, samples: np.ndarray) -> None:
        self._received += len(samples)

    def is_ready(self) -> bool:
        if self.cancelled:
            return False
        chunk = self.model.chunk_ms * self.model.sample_rate // 1000
        backlog = self._received - self._consumed
        return backlog >= chunk or (self._finished and not self.is_done()) or self.steps_pending()

    def is_done(self) -> bool:
        if self.cancelled:
            return True
        total_words = int(np.ceil(self.received_ms / self.model.word_ms - 1e-9))
        return self._finished and self._consumed >= self._received and self._next_word >= total_words

    def _words_in(self, ms: float) -> int:
        return int(ms // self.model.word_ms)

    def _advance(self) -> None:
        chunk = self.model.chunk_ms * self.model.sample_rate // 1000
        self._consumed += self.samples_to_take(chunk)
        now = self.consumed_ms
        flushing = self.ends_input() or self.ends_segment()  # a part-word counts as a word
        w = self.model.word_ms
        # whole words heard so far (a trailing part-word counts at end of stream)
        heard = int(np.ceil(now / w - 1e-9)) if flushing else self._words_in(now)
        while self._next_word < heard:
            end = (self._next_word + 1) * w
            if not flushing and end + self.model.hold_ms > now:
                break
            i = self._next_word
            self._pending.append(UnitDraft(f"w{i}", i * w, min(end, now), now))
            self._next_word += 1
        self._partial = f"w{self._next_word}" if self._next_word < heard else ""
        if self.ends_segment() and not self.ends_input():
            self.begin_segment()

    def pop_result(self) -> StepResult:
        out = StepResult(self._pending, self._partial)
        self._pending, self._partial = [], None
        return out


class CountingModel:
    """``batch_sizes``: the sizes of the most recent steps (at most ``KEPT_BATCH_SIZES``, so that a
    server on this model for days does not grow; the scheduler's stats count every step)."""

    sample_rate = 16000
    KEPT_BATCH_SIZES = 4096

    def __init__(self, word_ms: float = 500.0, chunk_ms: int = 200, hold_ms: float = 300.0):
        self.word_ms = word_ms
        self.chunk_ms = chunk_ms
        self.hold_ms = hold_ms
        self.steps = 0
        self.batch_sizes: list[int] = []

    def create_stream(self, options: Mapping[str, object] | None = None) -> CountingStream:
        return CountingStream(self)

    def step(self, streams: Sequence[CountingStream]) -> None:
        self.steps += 1
        self.batch_sizes.append(len(streams))
        if len(self.batch_sizes) > self.KEPT_BATCH_SIZES:
            del self.batch_sizes[: self.KEPT_BATCH_SIZES // 2]  # amortised: once per 2048 steps
        for s in streams:
            s._advance()


class EchoTextStream(StreamBase):
    input_kinds = frozenset({TextDelta, WithdrawReply})

    def __init__(self, model: "EchoTextModel"):
        self.model = model
        self.text = ""  # the input text so far
        self._turn_start = 0  # where the turn not yet answered starts in ``text``
        self._reply: list[str] = []  # every word to answer, all turns
        self._answer_start = 0  # index in _reply of the current answer's first word
        self.made = 0  # words answered
        self._finished = False
        self.slot: int | None = None
        self._out: list[UnitDraft] = []
        self._tokens: list[int] = []
        self._ended = False  # an answer was completed since the last pop
        self._withdraw_to: tuple[int, int] | None = None  # (_reply length, _turn_start) before the last turn

    def accept(self, item: StreamInput) -> None:
        if isinstance(item, WithdrawReply):
            if self._withdraw_to is not None and len(self.text) == self._turn_start:
                (words, self._turn_start), self._withdraw_to = self._withdraw_to, None
                del self._reply[words:]
                self.made = min(self.made, words)
                self._out, self._tokens, self._ended = [], [], False
                if self.made == len(self._reply):
                    self.model.release(self)
            return
        if not isinstance(item, TextDelta):
            return super().accept(item)
        self.text = item.apply(self.text, answered_to=self._turn_start)
        if item.end_of_turn:
            if self.made == len(self._reply):
                self._answer_start = len(self._reply)
            self._withdraw_to = (len(self._reply), self._turn_start)
            self._reply += self.text[self._turn_start:].split()
            self._turn_start = len(self.text)

    def input_finished(self) -> None:
        self._finished = True

    def is_ready(self) -> bool:
        return not self.cancelled and self.made < len(self._reply)

    def is_done(self) -> bool:
        return self.cancelled or (self._finished and self.made == len(self._reply))

    def urgency(self) -> Urgency:
        if self.made == self._answer_start:  # waiting on the answer's first token
            return Urgency(self.model.first_token_budget_ms, priority=1)
        return Urgency(self.model.token_budget_ms, priority=0)

    def cancel(self) -> None:
        super().cancel()
        self.model.release(self)

    def pop_result(self) -> StepResult:
        out = StepResult(self._out, None, self._tokens, end_of_turn=self._ended)
        self._out, self._tokens, self._ended = [], [], False
        return out


class EchoTextModel:
    """first_token_budget_ms / token_budget_ms: the streams' deadlines (``Urgency.budget_ms``) for
    an answer's first token and for the tokens after it. slots: streams that may be answering at
    once (a full model raises ``ModelStepError`` for the stream that found no slot)."""

    def __init__(self, slots: int = 8, first_token_budget_ms: float = 200.0, token_budget_ms: float = 1000.0):
        self.first_token_budget_ms = first_token_budget_ms
        self.token_budget_ms = token_budget_ms
        self.free_slots = list(range(slots))[::-1]
        self.vocab: dict[str, int] = {}
        self.steps = 0
        self.batch_sizes: list[int] = []

    def create_stream(self, options: Mapping[str, object] | None = None) -> EchoTextStream:
        return EchoTextStream(self)

    def release(self, s: EchoTextStream) -> None:
        if s.slot is not None:
            self.free_slots.append(s.slot)
            s.slot = None

    def step(self, streams: Sequence[EchoTextStream]) -> None:
        need = sum(s.slot is None for s in streams)
        if need > len(self.free_slots):
            culprit = [s for s in streams if s.slot is None][len(self.free_slots)]
            err = ModelStepError(f"no free slot: {len(self.free_slots)} free, {need} streams need one")
            err.stream = culprit
            raise err
        self.steps += 1
        self.batch_sizes.append(len(streams))
        for s in streams:
            if s.slot is None:
                s.slot = self.free_slots.pop()
            word = s._reply[s.made]
            text = word if s.made == s._answer_start else " " + word  # text to append, as an LLM's
            s._out.append(UnitDraft(text, float(s.made), float(s.made + 1), float(s.made)))
            s._tokens.append(self.vocab.setdefault(word, len(self.vocab)))
            s.made += 1
            if s.made == len(s._reply):
                s._ended = True
                self.release(s)


CLAUSE_END = re.compile(r"[,.;:!?](\s|$)")


class ToneTtsStream(StreamBase):
    input_kinds = frozenset({TextDelta})

    def __init__(self, model: "ToneTtsModel"):
        self.model = model
        self.text = ""  # all text received
        self.spoken = 0  # characters of it spoken
        self.out_samples = 0
        self._finished = False  # end_of_turn: speak the rest
        self._out: list[UnitDraft] = []
        self._audio: list[np.ndarray] = []

    def accept(self, item: StreamInput) -> None:
        if not isinstance(item, TextDelta):
            return super().accept(item)
        self.text = item.apply(self.text, answered_to=self.spoken)
        self._finished = self._finished or item.end_of_turn

    def input_finished(self) -> None:
        self._finished = True

    def _next_clause(self) -> int | None:
        """End (characters) of the next clause ready to speak, or None."""
        rest = self.text[self.spoken:]
        m = CLAUSE_END.search(rest)
        if m is not None:
            return self.spoken + m.end()
        if len(rest.split()) > self.model.max_clause_words:
            return self.spoken + len(rest)
        if self._finished and rest.strip():
            return len(self.text)
        return None

    def is_ready(self) -> bool:
        return not self.cancelled and self._next_clause() is not None

    def is_done(self) -> bool:
        return self.cancelled or (self._finished and not self.text[self.spoken:].strip())

    def cancel(self) -> None:
        super().cancel()
        self.spoken = len(self.text)

    def pop_result(self) -> StepResult:
        audio = np.concatenate(self._audio) if self._audio else None
        out = StepResult(self._out, audio=audio)
        self._out, self._audio = [], []
        return out

    def _speak(self) -> None:
        end = self._next_clause()
        clause = self.text[self.spoken:end]
        self.spoken = end
        n = max(1, len(clause.split())) * self.model.word_ms * self.model.sample_rate // 1000
        t = (self.out_samples + np.arange(n)) / self.model.sample_rate
        self._audio.append((0.1 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32))
        start_ms = 1000.0 * self.out_samples / self.model.sample_rate
        self.out_samples += n
        self._out.append(UnitDraft(clause.strip(), start_ms, 1000.0 * self.out_samples / self.model.sample_rate,
                                   float(self.spoken)))


class ToneTtsModel:
    """A TTS stand-in: ``word_ms`` of a 220 Hz tone per word at ``sample_rate``; a step speaks one
    clause (text up to , . ; : ! ? followed by a space, more than ``max_clause_words`` words, or
    the rest after end of turn) of each ready stream. Units: the clause's text, ``start_ms``/``end_ms``
    its place in the stream's output audio."""

    def __init__(self, word_ms: int = 300, sample_rate: int = 24000, max_clause_words: int = 12):
        self.word_ms = word_ms
        self.sample_rate = sample_rate
        self.max_clause_words = max_clause_words
        self.steps = 0

    def create_stream(self, options: Mapping[str, object] | None = None) -> ToneTtsStream:
        return ToneTtsStream(self)

    def step(self, streams: Sequence[ToneTtsStream]) -> None:
        self.steps += 1
        for s in streams:
            s._speak()
