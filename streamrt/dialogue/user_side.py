"""The user's side of a ``DialogueSession``: the ASR's words, routed to ``UserCommitEvent`` /
``UserPartialEvent`` and (while the user holds the floor) into the LLM's open turn, the LLM's
end-of-turn score of the transcript, and the ASR's finalisation at the end of a speech run
(``Finalize``). A mixin of ``DialogueSession``, whose ``__init__`` sets the state it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamrt.dialogue.events import DialogueEvent, UserCommitEvent, UserPartialEvent
from streamrt.types import CommitEvent, EndEvent, Finalize, PartialEvent, TextDelta

if TYPE_CHECKING:
    from policies.turn_taking.base import TurnPolicy
    from streamrt.dialogue.models import StepHost
    from streamrt.dialogue.playback import AgentTurn
    from streamrt.dialogue.speech import AsrGate, UserSpeech
    from streamrt.session import Session
    from streamrt.stream_session import StreamSession

SAMPLE_RATE = 16000  # the user's audio inside the session (ASR and VAD both take it)


def strip_trailing_off(text: str) -> str:
    """The words without the ellipsis Whisper writes where a speaker trails off mid-turn ("I have been
    sleeping badly and..."): the LLM reads such a text as finished (P(end of turn) 0.08-0.3 against
    0.000 without it) and the semantic policy would take over the pause."""
    for mark in ("...", "\u2026"):
        if text.endswith(mark):
            return text[: -len(mark)].rstrip()
    return text


class UserSide:
    """The user's words (ASR) and the LLM's open turn made of them."""

    # set by DialogueSession.__init__
    host: StepHost
    policy: TurnPolicy
    asr: Session
    llm: StreamSession
    speech: UserSpeech
    gate: AsrGate
    turn: AgentTurn | None
    media_ms: float
    _events: list[DialogueEvent]
    _eof: bool
    # the user's words (ASR): committed, the partial after them, where the open turn starts
    _words: list[str]
    _partial: list[str]
    _turn_word0: int
    _shown: int  # of them, sent as UserCommitEvent
    _partial_is_echo: bool  # the partial came while only the agent (or nothing) was heard
    # the LLM's input text: where the open turn starts in it and what of the turn was sent
    _llm_chars: int  # all text sent before the open turn
    _llm_sent: str
    _score_for: str | None  # end-of-turn score asked for this transcript
    _scored: tuple[str, float] | None
    _finalized_at: int  # gate.sent when the ASR was last asked to finalise (Finalize)
    _run_sent: int  # gate.sent when the last speech run ended: the ASR must commit this far

    def _sub_event(self, e) -> None:  # DialogueSession's: a sub-session's error or end
        raise NotImplementedError


    def _asr_event(self, e) -> None:
        # words that come while the user is not heard, from the agent's turn until the user's voice
        # is heard again (the ASR lags the audio by up to a second), are the agent's echo
        echo = not self.speech.speaking and (not self.speech.heard if self.turn is None else not self.turn.paused)
        if isinstance(e, CommitEvent):
            words = e.text.split()
            n_partial = len(self._partial)
            self._words += words
            self._partial = self._partial[len(words):] if len(words) <= n_partial else []
        elif isinstance(e, PartialEvent):
            self._partial = e.text.split()
        elif isinstance(e, EndEvent):
            self._partial = []
        else:
            return self._sub_event(e)
        if echo:  # words while only the agent's voice played: its echo, not the user's
            # committed words are skipped by index; the partial (it may yet turn into the user's
            # words) only until the user is heard
            self._turn_word0 = max(self._turn_word0, len(self._words))
            self._shown = max(self._shown, len(self._words))
            self._partial_is_echo = True
        elif isinstance(e, CommitEvent):
            self._show_words(len(self._words))
        elif isinstance(e, PartialEvent):
            self._events.append(UserPartialEvent(e.text, self.media_ms))
        self._sync_llm()

    def _show_words(self, upto: int) -> None:
        """Send the user's words up to index ``upto`` (of committed + partial) not yet sent as
        committed: ASR commits, and at the end of a turn the partial words it was answered with."""
        words = self._heard_words()[self._shown:upto]
        if words:
            self._shown = upto
            self._events.append(UserCommitEvent(" ".join(words), self.media_ms))

    def _heard_words(self) -> list[str]:
        """The user's words so far: committed, then the partial unless it is echo."""
        return self._words + ([] if self._partial_is_echo else self._partial)

    def _transcript(self) -> str:
        return " ".join(self._heard_words()[self._turn_word0:])

    def _floor_open(self) -> bool:
        """The user's words may go to the LLM: no agent turn, or one whose reply is complete and
        whose speech is held for the user's (so an overlap can be scored, and cut if it was a
        backchannel)."""
        return self.turn is None or (self.turn.reply_done and self.turn.paused and self.turn.reply_tokens > 0)

    def _sync_llm(self) -> None:
        """Make the LLM's open turn the transcript (while the user holds the floor)."""
        if not self._floor_open() or self._eof:
            return
        target = strip_trailing_off(self._transcript())
        if target == self._llm_sent:
            return
        common = 0
        for a, b in zip(target, self._llm_sent):
            if a != b:
                break
            common += 1
        self.llm.receive(TextDelta(target[common:], replace_from=self._llm_chars + common))
        self._llm_sent = target
        self.host.wake(self.llm)
        self._ask_score()

    def _ask_score(self) -> None:
        text = self._llm_sent
        # the user is silent and the ASR has committed the run's words: scoring earlier would score
        # a transcript whose last word or punctuation is about to change
        if (self.policy.wants_end_of_turn_p and text and self._score_for is None and self._floor_open()
                and not self.speech.speaking and (self._scored is None or self._scored[0] != text)
                and self._asr_has_run()):
            self._score_for = text
            self.llm.receive(TextDelta("", score_end=True))
            self.host.wake(self.llm)

    def _asr_has_run(self) -> bool:
        """Whether the ASR has committed the words of the last speech run, to its end and the VAD's
        hangover after it: no step in flight or asked for (its ``Finalize`` stepped) and the run's
        audio consumed. An ASR that cannot finalise (no ``Finalize`` in its ``input_kinds``) is
        not waited for."""
        if Finalize not in self.asr.stream.input_kinds:
            return True
        run_ms = 1000.0 * self._run_sent / SAMPLE_RATE
        return (not self.asr.in_step and not self.asr.stream.steps_pending()
                and self.asr.stream.consumed_ms >= run_ms - 1e-6)

    def _asr_caught_up(self) -> bool:
        """``_asr_has_run``, so the transcript holds the turn's last words; if not, and the run was
        not finalised yet, it is now. The policy's next frame decides again on the transcript
        that comes out."""
        if self._asr_has_run():
            return True
        if self._finalized_at < self._run_sent:
            self._finalize_asr()
        return False

    def _finalize_asr(self) -> None:
        """Have the ASR commit the words of the audio sent so far now (``Finalize``: one step over
        what it holds, short of a full step, at first-token priority, writing the whole hypothesis
        as the end of input would; the stream goes on, the next audio in a new segment), and send
        none of the run's silence after it (``AsrGate.close_run``)."""
        if Finalize in self.asr.stream.input_kinds and self._finalized_at != self.gate.sent:
            self._finalized_at = self.gate.sent
            self.asr.receive(Finalize(context=False))
            self.host.wake(self.asr)
            self.gate.close_run()
