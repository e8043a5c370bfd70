"""The agent's side of a ``DialogueSession``: the LLM's reply into the turn's TTS stream
(``AgentTextEvent``), the TTS audio into the ``AgentTurn``, starting and stopping a turn (barge-in
keeps what was heard; the user going on after the agent took over a pause withdraws the turn and
reopens the user's), and pacing: audio released at most ``audio_lead_ms`` ahead of playback. A
mixin of ``DialogueSession`` (after ``UserSide``, whose words a turn answers), whose ``__init__``
sets the state it uses.

Preemptive generation (``DialogueSettings.preempt_after_ms``): once the user is silent, the ASR
has read the whole speech run and the policy's score is in, the answer starts ahead of the turn
policy's decision, into a ``HeldAnswer``: the LLM replies and the TTS speaks, but nothing goes to
the client. When the policy says Speak on the same transcript, the held answer becomes the turn
(its text so far in one ``AgentTextEvent``, its audio paced from then on); when the user speaks
again or the transcript changes first, the reply is withdrawn from the LLM (``WithdrawReply``: it
leaves no trace in the history) and its speech cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from streamrt.dialogue.events import (AgentAudioEvent, AgentTextEvent, AgentTurnEndEvent, AgentTurnStartEvent,
                                      InterruptedEvent, UserTurnEndEvent, UserTurnScoreEvent)
from streamrt.dialogue.playback import AgentTurn
from streamrt.dialogue.user_side import UserSide, strip_trailing_off
from streamrt.stream_session import StepOutput, StreamSession
from streamrt.types import EndEvent, ReplyHeard, TextDelta, WithdrawReply

if TYPE_CHECKING:
    from streamrt.clock import Clock
    from streamrt.dialogue.models import DialogueModels
    from streamrt.dialogue.settings import DialogueSettings


@dataclass(frozen=True)
class AnsweredTurn:
    """The user's turn that agent turn ``turn`` answers, as it was before it was answered: where
    it began among the user's words (``word0``) and in the LLM's input (``llm_chars``), the text
    the LLM got for it (``llm_text``), and the silence after it when it was answered
    (``silence_ms``, media). A continuation (``Yield(user_continues=True)``) reopens it."""

    turn: int
    word0: int
    llm_chars: int
    llm_text: str
    silence_ms: float


@dataclass
class HeldAnswer:
    """An answer generated ahead of the turn policy's decision: its turn and speech (nothing of it
    released) and the LLM's open turn it answers (``transcript``, as sent to the LLM)."""

    turn: AgentTurn
    tts: StreamSession
    transcript: str


class AgentSide(UserSide):
    """The agent's turns: the LLM's reply, its speech, and its pacing."""

    # set by DialogueSession.__init__
    id: str
    models: DialogueModels
    clock: Clock
    settings: DialogueSettings
    tts: StreamSession | None  # the current agent turn's
    _turns: int
    _interruptions: int
    _held: HeldAnswer | None  # an answer generated ahead of the decision (preempt_after_ms)
    _preempts: int  # held answers started
    _preempts_dropped: int  # of them, discarded (the user went on)
    _answered: AnsweredTurn | None  # the user turn the latest agent turn answers
    _continued: int  # agent turns withdrawn because the user went on with the turn they answered

    def _on_output(self, sub: StreamSession) -> None:  # DialogueSession's: route, then tell the transport
        raise NotImplementedError

    def _answering(self) -> tuple[AgentTurn | None, StreamSession | None]:
        """The turn the LLM's reply goes to (the held answer's, or the current one's) and its speech."""
        return (self._held.turn, self._held.tts) if self._held is not None else (self.turn, self.tts)

    def _llm_event(self, e) -> None:
        if not isinstance(e, StepOutput):
            return self._sub_event(e)
        r = e.result
        if r.end_of_turn_p is not None and self._score_for is not None:
            self._scored, self._score_for = (self._score_for, r.end_of_turn_p), None
            self._events.append(UserTurnScoreEvent(self._scored[0], r.end_of_turn_p, self.speech.silence_ms,
                                                   self.media_ms))
            self._ask_score()
        turn, tts = self._answering()
        if turn is None or turn.reply_done:
            return
        text = "".join(u.text for u in r.committed)
        turn.reply_tokens += len(r.tokens)
        if text:
            turn.text += text
            if self._held is None:  # a held answer's text goes out when it is released
                self._events.append(AgentTextEvent(turn.turn, text, self.media_ms))
            tts.receive(TextDelta(text))
            self.host.wake(tts)
        if r.end_of_turn:
            turn.reply_done = True
            tts.receive(TextDelta("", end_of_turn=True))
            tts.receive_eof()
            self.host.wake(tts)

    def _tts_event(self, e, turn: AgentTurn | None) -> None:
        """An event of ``turn``'s TTS stream (the current turn's or the held answer's)."""
        if isinstance(e, StepOutput) and turn is not None:
            if e.result.audio is not None:
                turn.add_audio(e.result.audio)
            turn.units += e.result.committed
        elif isinstance(e, EndEvent) and turn is not None:
            turn.speech_done = True
        else:
            self._sub_event(e)

    def _new_speech(self, name: str) -> StreamSession:
        tts = StreamSession(self.models.tts.create_stream(), self.clock, session_id=f"{self.id}-{name}")
        self.host.add(tts, self._on_output, model=self.models.tts)
        return tts

    def _start_turn(self, text: str | None = None) -> None:
        """An agent turn: the LLM answers the user's open turn, or (``text``) the agent says ``text``."""
        answered = self._transcript()
        if text is None:
            self._sync_llm()  # the open turn as it stands now
        self._turns += 1
        self.speech.agent_started()
        self.turn = AgentTurn(self._turns, self.models.tts.sample_rate)
        self.tts = self._new_speech(f"tts{self._turns}")
        if text is not None:
            self.turn.text, self.turn.reply_done, self.turn.from_llm = text, True, False
            self._events.append(AgentTextEvent(self.turn.turn, text, self.media_ms))
            self.tts.receive(TextDelta(text, end_of_turn=True))
            self.tts.receive_eof()
            self.host.wake(self.tts)
            return
        self.llm.receive(TextDelta("", end_of_turn=True))
        self.host.wake(self.llm)
        self._end_user_turn(answered)

    def _end_user_turn(self, answered: str) -> None:
        """The user's open turn is answered (by ``self.turn``): the next words open a new one."""
        self._answered = AnsweredTurn(self.turn.turn, self._turn_word0, self._llm_chars, self._llm_sent,
                                      self.speech.silence_ms)
        self._llm_chars += len(self._llm_sent)
        self._llm_sent = ""
        self._turn_word0 = len(self._heard_words())
        self._show_words(self._turn_word0)  # the words answered are the user's turn, as committed
        scored = self._scored is not None and self._scored[0] == strip_trailing_off(answered)
        self._events.append(UserTurnEndEvent(answered, self.media_ms, self.speech.end_ms,
                                             self._scored[1] if scored else None, self.speech.silence_ms))
        self._score_for, self._scored = None, None

    # ---- preemptive generation ------------------------------------------------------------------
    def _preempt(self) -> None:
        """Start the answer ahead of the decision if the transcript is stable: the user silent for
        ``preempt_after_ms``, the ASR through the speech run, the LLM's open turn up to date and
        (for a policy that wants it) scored."""
        after = self.settings.preempt_after_ms
        if (after is None or self.turn is not None or self._held is not None or self._eof
                or self.speech.speaking or self.speech.silence_ms < after or not self._transcript()):
            return
        target = strip_trailing_off(self._transcript())
        unscored = self._scored is None or self._scored[0] != target
        if target != self._llm_sent or (self.policy.wants_end_of_turn_p and unscored):
            return  # the LLM reads (or scores) the turn first: a reply now would lose the score
        if not self._asr_caught_up():
            return
        self._preempts += 1
        turn = AgentTurn(self._turns + 1, self.models.tts.sample_rate)
        self._held = HeldAnswer(turn, self._new_speech(f"tts{turn.turn}-early{self._preempts}"), target)
        self.llm.receive(TextDelta("", end_of_turn=True))
        self.host.wake(self.llm)

    def _held_is_stale(self) -> bool:
        return self._held is not None and (
            self.speech.speaking or strip_trailing_off(self._transcript()) != self._held.transcript)

    def _drop_held(self) -> None:
        """The user went on: the held answer is withdrawn from the LLM and its speech cancelled."""
        held, self._held = self._held, None
        self._preempts_dropped += 1
        self.llm.receive(WithdrawReply())
        self.host.wake(self.llm)
        self.host.cancel(held.tts)

    def _release_held(self) -> None:
        """The policy said Speak on the transcript the held answer answers: it is the turn now."""
        held, self._held = self._held, None
        answered = self._transcript()
        self._turns += 1
        self.speech.agent_started()
        self.turn, self.tts = held.turn, held.tts
        self._end_user_turn(answered)
        if held.turn.text:
            self._events.append(AgentTextEvent(held.turn.turn, held.turn.text, self.media_ms))

    def _sync_llm(self) -> None:
        if self._held_is_stale():  # new words: the answer to the old ones is not wanted
            self._drop_held()
        super()._sync_llm()

    def _stop_turn(self, *, interrupted: bool, user_continues: bool = False) -> None:
        """Barge-in (or end of input): cancel the reply and its speech; keep what was heard. With
        ``user_continues`` (the user went on with the turn this one answered) the reply is
        withdrawn instead and the user's turn reopened (``_reopen_user_turn``)."""
        turn, tts, now = self.turn, self.tts, self.clock.now()
        turn.advance(now)
        heard = turn.heard_text()
        reopen = user_continues and self._can_reopen()
        # the turn is over before its speech is cancelled: the scheduler runs the cancelled
        # stream's callback at once, which routes again (VAD frames left to judge would see the
        # turn still on and stop it a second time)
        self.turn, self.tts = None, None
        if reopen:
            self._reopen_user_turn()
        elif turn.from_llm:  # the LLM's reply ends (however far it got) and keeps only what was heard
            self.llm.receive(ReplyHeard(heard))
            self.host.wake(self.llm)
        if interrupted:
            self._interruptions += 1
            self._continued += reopen
            self._events.append(InterruptedEvent(turn.turn, heard, self.media_ms, self.speech.start_ms, reopen))
        if tts is not None:
            self.host.cancel(tts)
        self._sync_llm()

    def _can_reopen(self) -> bool:
        """The current turn answers the user's latest turn and its audio has not all gone out (a
        turn heard whole is never withdrawn)."""
        turn, answered = self.turn, self._answered
        return (turn is not None and turn.from_llm and not turn.ended and answered is not None
                and answered.turn == turn.turn)

    def _reopen_user_turn(self) -> None:
        """The agent took over a pause and the user went on: its reply leaves the LLM's history as
        if never said (``WithdrawReply``; the user heard at most a word or two of it), and the user
        turn it answered is open again, so the words since append to it and the next answer is to
        the whole turn. Words the user said over the agent that went to the LLM as a new turn (over
        a finished reply) are taken out first: a reply is withdrawn only with nothing after it."""
        answered, self._answered = self._answered, None
        if self._llm_sent:
            self.llm.receive(TextDelta("", replace_from=self._llm_chars))
        self.llm.receive(WithdrawReply())
        self.host.wake(self.llm)
        self._turn_word0, self._llm_chars, self._llm_sent = answered.word0, answered.llm_chars, answered.llm_text
        self._score_for, self._scored = None, None

    # ---- pacing --------------------------------------------------------------------------------
    def _release(self) -> None:
        turn = self.turn
        if turn is None:
            return
        turn.advance(self.clock.now())
        while (due := turn.take(self.settings.audio_lead_ms)) is not None:
            offset_ms, samples = due
            if not turn.started:
                turn.started = True
                turn.voice_from_ms = self.speech.now_ms
                self._events.append(AgentTurnStartEvent(turn.turn, self.media_ms))
            self._events.append(AgentAudioEvent(turn.turn, samples, turn.sample_rate, offset_ms))
        if turn.speech_done and turn.released >= turn.made and not turn.ended:
            turn.ended = True
            if turn.started:
                self._events.append(AgentTurnEndEvent(turn.turn, turn.text, self.media_ms))
        if turn.ended and not turn.audible:
            self.turn, self.tts = None, None
            self._sync_llm()

