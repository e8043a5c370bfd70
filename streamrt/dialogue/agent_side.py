"""The agent's side of a ``DialogueSession``: the LLM's reply into the turn's TTS stream
(``AgentTextEvent``), the TTS audio into the ``AgentTurn``, starting and stopping a turn (barge-in
keeps what was heard), and pacing: audio released at most ``audio_lead_ms`` ahead of playback. A
mixin of ``DialogueSession`` (after ``UserSide``, whose words a turn answers), whose ``__init__``
sets the state it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamrt.dialogue.events import (AgentAudioEvent, AgentTextEvent, AgentTurnEndEvent, AgentTurnStartEvent,
                                      InterruptedEvent, UserTurnEndEvent)
from streamrt.dialogue.playback import AgentTurn
from streamrt.dialogue.user_side import UserSide
from streamrt.stream_session import StepOutput, StreamSession
from streamrt.types import EndEvent, ReplyHeard, TextDelta

if TYPE_CHECKING:
    from streamrt.clock import Clock
    from streamrt.dialogue.models import DialogueModels
    from streamrt.dialogue.settings import DialogueSettings


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

    def _on_output(self, sub: StreamSession) -> None:  # DialogueSession's: route, then tell the transport
        raise NotImplementedError

    def _llm_event(self, e) -> None:
        if not isinstance(e, StepOutput):
            return self._sub_event(e)
        r = e.result
        if r.end_of_turn_p is not None and self._score_for is not None:
            self._scored, self._score_for = (self._score_for, r.end_of_turn_p), None
            self._ask_score()
        turn = self.turn
        if turn is None or turn.reply_done:
            return
        text = "".join(u.text for u in r.committed)
        turn.reply_tokens += len(r.tokens)
        if text:
            turn.text += text
            self._events.append(AgentTextEvent(turn.turn, text, self.media_ms))
            self.tts.receive(TextDelta(text))
            self.host.wake(self.tts)
        if r.end_of_turn:
            turn.reply_done = True
            self.tts.receive(TextDelta("", end_of_turn=True))
            self.tts.receive_eof()
            self.host.wake(self.tts)

    def _tts_event(self, e) -> None:
        turn = self.turn
        if isinstance(e, StepOutput) and turn is not None:
            if e.result.audio is not None:
                turn.add_audio(e.result.audio)
            turn.units += e.result.committed
        elif isinstance(e, EndEvent) and turn is not None:
            turn.speech_done = True
        else:
            self._sub_event(e)

    def _start_turn(self, text: str | None = None) -> None:
        """An agent turn: the LLM answers the user's open turn, or (``text``) the agent says ``text``."""
        answered = self._transcript()
        if text is None:
            self._sync_llm()  # the open turn as it stands now
        self._turns += 1
        self.speech.agent_started()
        self.turn = AgentTurn(self._turns, self.models.tts.sample_rate)
        self.tts = StreamSession(self.models.tts.create_stream(), self.clock, session_id=f"{self.id}-tts{self._turns}")
        self.host.add(self.tts, self._on_output, model=self.models.tts)
        if text is not None:
            self.turn.text, self.turn.reply_done, self.turn.from_llm = text, True, False
            self._events.append(AgentTextEvent(self.turn.turn, text, self.media_ms))
            self.tts.receive(TextDelta(text, end_of_turn=True))
            self.tts.receive_eof()
            self.host.wake(self.tts)
            return
        self.llm.receive(TextDelta("", end_of_turn=True))
        self.host.wake(self.llm)
        self._llm_chars += len(self._llm_sent)
        self._llm_sent = ""
        self._turn_word0 = len(self._heard_words())
        self._show_words(self._turn_word0)  # the words answered are the user's turn, as committed
        self._events.append(UserTurnEndEvent(answered, self.media_ms, self.speech.end_ms))
        self._score_for, self._scored = None, None

    def _stop_turn(self, *, interrupted: bool) -> None:
        """Barge-in (or end of input): cancel the reply and its speech; keep what was heard."""
        turn, now = self.turn, self.clock.now()
        turn.advance(now)
        heard = turn.heard_text()
        if turn.from_llm:  # the LLM's reply ends (however far it got) and keeps only what was heard
            self.llm.receive(ReplyHeard(heard))
            self.host.wake(self.llm)
        if self.tts is not None:
            self.host.cancel(self.tts)
        if interrupted:
            self._interruptions += 1
            self._events.append(InterruptedEvent(turn.turn, heard, self.media_ms, self.speech.start_ms))
        self.turn, self.tts = None, None
        self._sync_llm()

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
                self._events.append(AgentTurnStartEvent(turn.turn, self.media_ms))
            self._events.append(AgentAudioEvent(turn.turn, samples, turn.sample_rate, offset_ms))
        if turn.speech_done and turn.released >= turn.made and not turn.ended:
            turn.ended = True
            if turn.started:
                self._events.append(AgentTurnEndEvent(turn.turn, turn.text, self.media_ms))
        if turn.ended and not turn.audible:
            self.turn, self.tts = None, None
            self._sync_llm()

