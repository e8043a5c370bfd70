"""The LLM decides whether the user has finished: its own probability that the transcript so far
ends there, as LiveKit's turn detector scores the end-of-utterance token with a small LM on
normalised text. The LLM conversation (``ConversationSettings.score_sentence_end``) scores the
words without the final punctuation the ASR gave them and counts the end-of-turn token
(SmolLM2's ``<|im_end|>``) and the tokens that end a sentence: Whisper writes the first part of a
paused turn as finished ("My budget is not very large, so.", "After the interview, should I
send?"), and SmolLM2 scored that punctuation, not the words. It costs one prefill row: the open
turn is already prefilled while the user speaks (LiveMind), so scoring reads only the last token
again.

When the ASR ended the words with a mark ("?", "."), the conversation also scores them as written
and pools the two (``ConversationSettings.score_with_marks``): the mark is Whisper's ear for a
sentence end, which it also writes at many pauses, so it raises the words' score only to the
geometric mean of both ("How long should I bake a potato" 0.01 alone, 0.10 pooled; "After the
interview, should I send?" cut at a pause stays < 0.01).

When the words make a whole turn (p >= ``complete_p``) the agent answers after ``short_wait_ms`` of
silence; at or below ``pause_p`` (where the parts before a mid-turn pause score: "I'd like to book
... a table") after ``long_wait_ms``; in between after a wait log-linear in p (``wait_ms``).
Until the score arrives it waits as for an incomplete turn.

While the agent speaks the same duration-and-text rule as ``silence`` decides a barge-in. With
``floor_p`` set, also the score once the user pauses (the agent's audio is held meanwhile): words
that do not stand alone as a turn (p < ``floor_p``) make the agent yield. It is off by default
because SmolLM2-135M does not separate the two after its own answer (see ``floor_p``); a larger LLM
may. The score needs the agent's reply to be generated in full (the LLM is free).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from policies.turn_taking.base import Listen, Speak, TurnAction, TurnPolicy, TurnView, Yield, barge_in
from streamrt.errors import PolicyOptionError


class Semantic(TurnPolicy):
    """complete_p: end-of-turn probability from which a turn counts as complete (SmolLM2-135M after
    the served system prompt, fp32, on data/dialogues.yaml's turns, scored without their final
    punctuation: whole turns 0.04-0.90, 22 of 25 at or above 0.2; the first parts before a mid-turn
    pause below 0.001, however the ASR punctuated them; docs/benchmarks.md). short_wait_ms /
    long_wait_ms: silence before answering a complete / an incomplete turn. pause_p: a score at or
    below it waits the whole long wait, one between it and complete_p a wait log-linear in p (None:
    two levels, long below complete_p; in `dialogue eval`, pooled with the ASR's final mark, 20 of
    22 pause parts scored below 0.01, the whole turns 0.05-0.92 except two the ASR garbled).
    min_interrupt_ms / interrupt_words / continue_window_ms / continue_min_speech_ms: as in
    ``silence``. floor_p: while the agent speaks, user words scored below it make it yield when the
    user pauses (None disables; off by default: SmolLM2-135M scores a backchannel after its own
    answer as low as the start of an interruption, "Okay." 0.003 and "Mm-hm." 0.004 against
    "Wait," 0.000, so it would stop the agent on backchannels; scored as written, before
    ``score_sentence_end``)."""

    name = "semantic"
    wants_end_of_turn_p = True

    def __init__(self, complete_p: float = 0.2, short_wait_ms: float = 250.0, long_wait_ms: float = 1300.0,
                 min_interrupt_ms: float | None = 1200.0, interrupt_words: int | None = 3,
                 floor_p: float | None = None, continue_window_ms: float | None = 700.0,
                 continue_min_speech_ms: float | None = 300.0, pause_p: float | None = 0.01):
        self.check_option("complete_p", complete_p, maximum=1.0, unit="(probability)")
        if pause_p is not None and not (isinstance(pause_p, (int, float)) and 0 < pause_p < complete_p):
            raise PolicyOptionError(f"turn policy {self.name!r}: pause_p must be > 0 and < complete_p "
                                    f"({complete_p}) (probability) or None, got {pause_p!r}")
        self.check_option("short_wait_ms", short_wait_ms, minimum=1.0)
        self.check_option("long_wait_ms", long_wait_ms, minimum=short_wait_ms)
        self.check_option("min_interrupt_ms", min_interrupt_ms)
        self.check_option("interrupt_words", interrupt_words, minimum=1, unit="words")
        self.check_option("floor_p", floor_p, maximum=1.0, unit="(probability)")
        self.check_option("continue_window_ms", continue_window_ms)
        self.check_option("continue_min_speech_ms", continue_min_speech_ms)
        self.complete_p = complete_p
        self.short_wait_ms = short_wait_ms
        self.long_wait_ms = long_wait_ms
        self.min_interrupt_ms = min_interrupt_ms
        self.interrupt_words = interrupt_words
        self.floor_p = floor_p
        self.continue_window_ms = continue_window_ms
        self.continue_min_speech_ms = continue_min_speech_ms
        self.pause_p = pause_p

    def decide(self, view: TurnView) -> TurnAction:
        p = view.end_of_turn_p
        if view.agent_speaking:
            yielded = barge_in(view, self.min_interrupt_ms, self.interrupt_words, self.continue_window_ms,
                               self.continue_min_speech_ms)
            if yielded is not None:
                return yielded
            claims_floor = self.floor_p is not None and p is not None and view.words and p < self.floor_p
            return Yield() if claims_floor and not view.user_speaking else Listen()
        if view.user_speaking or not view.words or view.lips == "active":
            return Listen()  # lips still moving (a camera): the user has not finished
        return Speak() if view.silence_ms >= self.wait_ms(p) else Listen()

    def wait_ms(self, p: float | None) -> float:
        """The silence to wait before answering a turn scored ``p`` (None: not scored yet): the short
        wait from ``complete_p``, the long one up to ``pause_p`` (or below ``complete_p`` without
        it), and in between log-linear in p: each factor of p takes off the same share of the
        difference."""
        if p is not None and p >= self.complete_p:
            return self.short_wait_ms
        if p is None or self.pause_p is None or p <= self.pause_p:
            return self.long_wait_ms
        share = math.log(p / self.pause_p) / math.log(self.complete_p / self.pause_p)
        return self.long_wait_ms - share * (self.long_wait_ms - self.short_wait_ms)

    def options(self) -> Mapping[str, Any]:
        return {"complete_p": self.complete_p, "short_wait_ms": self.short_wait_ms, "long_wait_ms": self.long_wait_ms,
                "min_interrupt_ms": self.min_interrupt_ms, "interrupt_words": self.interrupt_words,
                "floor_p": self.floor_p, "continue_window_ms": self.continue_window_ms,
                "continue_min_speech_ms": self.continue_min_speech_ms, "pause_p": self.pause_p}
