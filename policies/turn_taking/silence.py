"""The baseline: the user's turn ends after ``silence_ms`` of silence.

A threshold long enough not to take over a 1 s mid-turn pause makes every answer wait that long;
the semantic policy (``semantic.py``) waits less when the words already make a whole turn.
With a camera, neither policy ends a turn while the user's lips move (``TurnView.lips``).
"""

from __future__ import annotations

from typing import Any, Mapping

from policies.turn_taking.base import Listen, Speak, TurnAction, TurnPolicy, TurnView, barge_in


class Silence(TurnPolicy):
    """silence_ms: silence after the user's words before the agent answers. min_interrupt_ms /
    interrupt_words: while the agent speaks, user speech this long, or with this many words,
    interrupts it (shorter speech with fewer words is a backchannel: a synthesized "mm-hm" lasts up
    to 1 s); None disables one. The session holds the agent's audio from the onset of the user's
    speech, so waiting for this decision costs no barge-in reaction time. continue_window_ms: user
    speech that begins within this many ms of the agent's voice starting on an answer is the user
    going on with the turn (the agent took over a pause): the agent yields and the turn
    continues (``Yield(user_continues=True)``; ``base.barge_in``) once it has lasted
    continue_min_speech_ms (the agent is paused from its onset meanwhile: its echo stops then, the
    user goes on); None disables either. 300 ms: the echo guard's 96 ms run plus ~200 ms of speech
    after the agent fell silent (at -6 dB of echo, the guard alone let the agent's echo through as
    a continuation on 93 of 99 turns of the room eval). 700 ms: the
    agent's voice comes ~300-500 ms (onset p50 ~500 ms) into a pause it takes over (the VAD's
    hangover, the policy's wait, the first audio), so a user who ends a 1 s pause starts within
    the window; the backchannels and interruptions ``dialogue eval`` plays over an answer come
    from 1000 ms, its room's background voice at 800 ms: outside it."""

    name = "silence"

    def __init__(self, silence_ms: float = 1200.0, min_interrupt_ms: float | None = 1200.0,
                 interrupt_words: int | None = 3, continue_window_ms: float | None = 700.0,
                 continue_min_speech_ms: float | None = 300.0):
        self.check_option("silence_ms", silence_ms, minimum=1.0)
        self.check_option("min_interrupt_ms", min_interrupt_ms)
        self.check_option("interrupt_words", interrupt_words, minimum=1, unit="words")
        self.check_option("continue_window_ms", continue_window_ms)
        self.check_option("continue_min_speech_ms", continue_min_speech_ms)
        self.silence_ms = silence_ms
        self.min_interrupt_ms = min_interrupt_ms
        self.interrupt_words = interrupt_words
        self.continue_window_ms = continue_window_ms
        self.continue_min_speech_ms = continue_min_speech_ms

    def decide(self, view: TurnView) -> TurnAction:
        if view.agent_speaking:
            return barge_in(view, self.min_interrupt_ms, self.interrupt_words, self.continue_window_ms,
                            self.continue_min_speech_ms) or Listen()
        if not view.user_speaking and view.words and view.silence_ms >= self.silence_ms and view.lips != "active":
            return Speak()
        return Listen()

    def options(self) -> Mapping[str, Any]:
        return {"silence_ms": self.silence_ms, "min_interrupt_ms": self.min_interrupt_ms,
                "interrupt_words": self.interrupt_words, "continue_window_ms": self.continue_window_ms,
                "continue_min_speech_ms": self.continue_min_speech_ms}
