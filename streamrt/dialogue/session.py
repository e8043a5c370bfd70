"""The voice agent's session: sans-I/O, the shape of ``Session``, over four shared models.

    models = DialogueModels(asr=load_model("tiny.en"), llm=LlmConversationModel(...),
                            tts=load_tts("hibari"), vad=load_vad("silero"))
    models.add_to(scheduler)                               # once, for every session
    dialogue = DialogueSession(models, scheduler, clock, turn_policy=create("semantic"))
    dialogue.receive_pcm(data, "pcm_s16le")                 # the microphone, in real time
    for event in dialogue.events(): ...                    # call often (every 20 ms): it paces audio
    dialogue.receive_eof(); ...; dialogue.ended            # DialogueEndEvent last

The session owns one sub-session per model on the shared scheduler (``StepHost``: the real
``Scheduler``): the ASR ``Session`` and the VAD stream take the user's audio (16 kHz), the LLM
conversation takes the user's words, and each agent turn gets a TTS stream. Routing, turn-taking,
barge-in and pacing happen on the caller's thread, in ``events()`` and in the scheduler's output
callbacks (which then call ``on_update``, so a transport knows to call ``events()``):

- ASR commits and partials become ``UserCommitEvent`` / ``UserPartialEvent`` and, while the user
  holds the floor, the open turn of the LLM conversation (LiveMind: the words are prefilled while
  the user talks; a revised partial is edited back to the common prefix; at the end of the turn
  only the tail is left to read).
- Every VAD frame (32 ms) updates the user's speech state (behind the echo guard, see
  ``DialogueSettings``) and asks the turn policy: ``Speak`` ends the user's turn (the LLM answers),
  ``Yield`` is a barge-in, ``Listen`` goes on. A policy that wants it gets the LLM's end-of-turn
  probability of the transcript (``TextDelta(score_end=True)``).
- The LLM's reply goes out as ``AgentTextEvent`` and into the turn's TTS stream, which speaks
  clause by clause; the TTS audio is released as ``AgentAudioEvent`` at most ``audio_lead_ms``
  ahead of the modelled playback position (``AgentTurn``), after ``AgentTurnStartEvent``.
- User speech while the agent plays pauses its audio at once (``AgentPauseEvent``: the client stops
  playing and drops what it holds; the turn rewinds to the first word not heard whole); a
  ``Yield`` stops it: the LLM reply and the TTS stream are cancelled, ``InterruptedEvent``
  carries what the user heard (playback position mapped through the TTS units), and the LLM's
  history keeps only that (``ReplyHeard``).
  A ``Yield(user_continues=True)`` (the user went on with the turn the agent had just answered:
  it took over a pause) withdraws the reply instead (``WithdrawReply``: nothing of it stays in the
  LLM's history) and reopens the user's turn: the words since append to it, and the next
  ``UserTurnEndEvent`` carries the whole turn (``InterruptedEvent.user_continues``).
  Speech the policy does not yield to (a backchannel) resumes the agent after
  ``resume_after_ms`` of silence (``AgentResumeEvent``; the audio comes again from where the turn
  rewound), and its words are dropped from the user's next turn.
- With a camera (``receive_video``, models with ``lips``), each frame goes to a lip-activity stream
  on the same scheduler and its scores into a ``LipTimeline``: speech over lips seen still for
  ``lips_window_ms`` is not the user's (the agent's echo, a TV, another person: it neither pauses
  nor interrupts the agent, nor starts a user turn), and the turn policy sees the lips
  (``TurnView.lips``: no turn ends while they move); moving lips, no face or no frames leave the
  audio-only behaviour as it is. A VAD frame waits for the lips of its time at most
  ``lips_max_wait_ms`` (late frames).

Times: turn-taking runs on the user's media clock (VAD frames), pacing on the injected clock; the
core reads no other time. The feed path never raises: bad input becomes an ``ErrorEvent``.

This module holds the input, the routing and turn-taking; the user's side (ASR words into the
LLM's open turn) is ``user_side.UserSide``, the agent's (reply, speech, pacing) ``agent_side.AgentSide``,
the camera's (lip activity) ``camera_side.CameraSide``.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from typing import Callable

import numpy as np

from policies.turn_taking.base import Speak, TurnPolicy, TurnView, Yield
from streamrt.audio import StreamResampler, check_format, decode_pcm, downmix
from streamrt.clock import Clock
from streamrt.dialogue.agent_side import AgentSide
from streamrt.dialogue.camera_side import CameraSide
from streamrt.dialogue.events import AgentPauseEvent, AgentResumeEvent, DialogueEndEvent, DialogueEvent
from streamrt.dialogue.models import DialogueModels, StepHost
from streamrt.dialogue.playback import AgentTurn
from streamrt.dialogue.settings import DialogueSettings
from streamrt.dialogue.speech import AsrGate, UserSpeech
from streamrt.dialogue.user_side import SAMPLE_RATE, strip_trailing_off
from streamrt.errors import InputError, LimitExceeded, SessionClosed, StreamrtError
from streamrt.session import Session, SessionLimits
from streamrt.stream_session import StepOutput, StreamSession
from streamrt.tasks.lip_timeline import LipTimeline
from streamrt.types import AudioChunk, ErrorEvent

__all__ = ["DialogueSession", "StepHost", "strip_trailing_off", "SAMPLE_RATE"]

_ids = itertools.count(1)


class DialogueSession(AgentSide, CameraSide):
    """One spoken dialogue. See the module docstring for what it does and what the caller does."""

    def __init__(self, models: DialogueModels, host: StepHost, clock: Clock, turn_policy: TurnPolicy, *,
                 settings: DialogueSettings = DialogueSettings(), input_sample_rate: int = SAMPLE_RATE,
                 input_channels: int = 1, session_id: str | None = None, greeting: str | None = None,
                 on_update: Callable[[], None] | None = None):
        check_format("pcm_f32le", input_sample_rate, input_channels)
        self.id = session_id or f"d{next(_ids)}"
        self.models, self.host, self.clock, self.policy, self.settings = models, host, clock, turn_policy, settings
        self.input_sample_rate, self.input_channels = input_sample_rate, input_channels
        self.on_update = on_update
        self._resample = StreamResampler(input_sample_rate, SAMPLE_RATE)
        self._events: list[DialogueEvent] = []
        self._samples = 0  # user audio at 16 kHz received
        self._input_frames = 0  # at the input rate (max_input_s)
        self._eof = self._ended = False
        limits = SessionLimits(max_buffered_audio_s=settings.max_buffered_audio_s, max_stream_s=None)
        self.asr = Session(models.asr.create_stream(dict(models.asr_options)), clock, limits=limits,
                           session_id=f"{self.id}-asr")
        self.vad = StreamSession(models.vad.create_stream(), clock, session_id=f"{self.id}-vad")
        self.llm = StreamSession(models.llm.create_stream(dict(models.llm_options)), clock, session_id=f"{self.id}-llm")
        self.tts: StreamSession | None = None  # the current agent turn's
        self.video: StreamSession | None = None  # lip activity, from the first camera frame
        self.lips = LipTimeline()
        self._lips_came_at = -math.inf  # clock time lip scores last arrived
        self._lips_lag_ms = 0.0  # then: user audio received past the camera's next frame due (ms of media)
        self._vad_waiting: deque[tuple[float, float]] = deque()  # VAD frames (p, clock when scored) to judge
        for sub, model in ((self.asr, models.asr), (self.vad, models.vad), (self.llm, models.llm)):
            host.add(sub, self._on_output, model=model)
        # the user's words (ASR): committed, the partial after them, where the open turn starts
        self._words: list[str] = []
        self._partial: list[str] = []
        self._turn_word0 = 0
        self._shown = 0  # of them, sent as UserCommitEvent
        self._partial_is_echo = False  # the partial came while only the agent (or nothing) was heard
        # the LLM's input text: where the open turn starts in it and what of the turn was sent
        self._llm_chars = 0  # all text sent before the open turn
        self._llm_sent = ""
        self._score_for: str | None = None  # end-of-turn score asked for this transcript
        self._scored: tuple[str, float] | None = None
        # the user's speech (VAD), in media ms
        self.speech = UserSpeech(settings, models.vad.frame_ms, SAMPLE_RATE)
        self.gate = AsrGate(settings.asr_preroll_ms, settings.asr_silence_tail_ms, SAMPLE_RATE)
        self._frame_samples = int(round(models.vad.frame_ms * SAMPLE_RATE / 1000))
        self._finalized_at = 0  # gate.sent when the ASR was last asked to finalise (Finalize)
        self._run_sent = 0  # gate.sent when the last speech run ended: the ASR must commit this far
        # the agent
        self._turns = 0
        self.turn: AgentTurn | None = None
        self._interruptions = 0
        self._resumes = 0
        self._held = None  # an answer generated ahead of the decision (preempt_after_ms)
        self._preempts = self._preempts_dropped = 0
        self._answered = None  # the user turn the latest agent turn answers (AnsweredTurn)
        self._continued = 0
        if greeting:  # the agent speaks first: a turn straight to the TTS, not in the LLM's context
            self._start_turn(greeting)

    # ---- input -------------------------------------------------------------------------------
    @property
    def media_ms(self) -> float:
        """User audio received so far (16 kHz samples counted)."""
        return 1000.0 * self._samples / SAMPLE_RATE

    @property
    def ended(self) -> bool:
        return self._ended

    def receive_pcm(self, data: bytes, encoding: str) -> None:
        """Raw PCM bytes at the session's input rate and channels; errors become events."""
        try:
            x = decode_pcm(data, encoding, self.input_channels)
        except StreamrtError as e:
            self._error(e)
            return
        self.receive_audio(x)

    def receive_audio(self, samples: np.ndarray) -> None:
        """(frames,) or (frames, channels) float samples at the input rate: the microphone,
        silence included, in real time."""
        try:
            if self._eof:
                raise SessionClosed("audio after end of stream is ignored")
            x = np.asarray(samples, dtype=np.float32)
            if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[1] != self.input_channels) or (
                    x.ndim == 1 and self.input_channels != 1):
                raise InputError(f"audio of shape {x.shape} does not match {self.input_channels} channel(s)",
                                 code="bad_channels")
            if not np.all(np.isfinite(x)):
                raise InputError("audio contains NaN or infinity", code="bad_samples")
            limit = self.settings.max_input_s
            total = (self._input_frames + len(x)) / self.input_sample_rate
            if limit is not None and total > limit:
                raise LimitExceeded("max_input_s", limit, total, "s", what="dialogue length", fatal=True)
            self._input_frames += len(x)
            self._feed(self._resample(downmix(x)))
        except StreamrtError as e:
            self._error(e)
        except (TypeError, ValueError) as e:
            self._error(InputError(f"audio must be an array of numbers: {e}", code="bad_samples"))

    def _feed(self, x: np.ndarray) -> None:
        if not len(x):
            return
        start = self.media_ms
        self._samples += len(x)
        self.speech.add_audio(x)
        self.gate.add(x)  # to the ASR once the VAD has judged it
        self.vad.receive(AudioChunk(x, SAMPLE_RATE, start))
        self.host.wake(self.vad)

    def _to_asr(self, x: np.ndarray | None) -> None:
        if x is not None and len(x):
            self.asr.receive_audio(x)
            self.host.wake(self.asr)

    def receive_playback(self, turn: int, position_ms: float) -> None:
        """The client reports it has played ``position_ms`` of agent turn ``turn`` (optional: without
        reports, playback is assumed to run in real time from the turn's first audio)."""
        if self.turn is not None and self.turn.turn == turn:
            self.turn.report(position_ms, self.clock.now())

    def receive_eof(self) -> None:
        """The user stopped (``stop``): the agent's turn is cut, the models flush, and the session
        ends with ``DialogueEndEvent`` once every sub-session has."""
        if self._eof:
            return
        self._eof = True
        tail = self._resample(np.zeros(0, np.float32), last=True)
        self._feed(tail)
        self._to_asr(self.gate.flush())
        if self._held is not None:
            self._drop_held()
        if self.turn is not None:
            self._stop_turn(interrupted=False)
        for sub in self._inputs():
            sub.receive_eof()
            self.host.wake(sub)
        self._pump()

    def _inputs(self) -> list[StreamSession]:
        return [self.asr, self.vad, self.llm] + ([self.video] if self.video is not None else [])

    def close(self) -> None:
        """End now: every sub-session is cancelled (their slots freed); ``DialogueEndEvent`` follows."""
        self._eof = True
        for sub in (*self._inputs(), self.tts, self._held.tts if self._held is not None else None):
            if sub is not None:
                self.host.cancel(sub)
        self.tts = None
        self.turn = self._held = None
        self._pump()

    # ---- output ------------------------------------------------------------------------------
    def events(self) -> list[DialogueEvent]:
        """Route what the models produced, release due agent audio (by ``clock.now()``), drain."""
        self._pump()
        out, self._events = self._events, []
        return out

    def summary(self) -> dict:
        return {"media_ms": round(self.media_ms, 1), "agent_turns": self._turns,
                "interruptions": self._interruptions, "resumed_after_backchannel": self._resumes,
                "user_continued": self._continued,
                "asr_audio_ms": round(1000.0 * self.gate.sent / SAMPLE_RATE, 1),
                "preemptive_answers": self._preempts, "preemptive_answers_dropped": self._preempts_dropped,
                "turn_policy": self.policy.describe()}

    # ---- routing -----------------------------------------------------------------------------
    def _on_output(self, sub: StreamSession) -> None:
        self._pump()
        if self.on_update is not None:
            self.on_update()

    def _pump(self) -> None:
        for e in self.asr.events():
            self._asr_event(e)
        self._ask_score()  # the ASR's finalisation may be through (with or without new words)
        for e in self.llm.events():
            self._llm_event(e)
        if self.tts is not None:
            for e in self.tts.events():
                self._tts_event(e, self.turn)
        if self._held is not None:
            for e in self._held.tts.events():
                self._tts_event(e, self._held.turn)
        self._video_events()  # before the VAD frames they judge
        for e in self.vad.events():  # after the words: a frame's decision sees the latest transcript
            if isinstance(e, StepOutput):
                now = self.clock.now()
                self._vad_waiting.extend((p, now) for p in e.result.frame_scores)
            else:
                self._sub_event(e)
        while self._vad_waiting and self._lips_in(self._vad_waiting[0][1]):
            self._frame(self._vad_waiting.popleft()[0])
        self._release()
        if (self._eof and not self._ended and all(s.ended for s in self._inputs()) and self.turn is None
                and self._held is None):
            self._ended = True
            self._events.append(DialogueEndEvent(self.media_ms, self.summary()))

    def _sub_event(self, e) -> None:
        if isinstance(e, ErrorEvent):
            self._events.append(e)
            if e.fatal and not self._eof:
                self.receive_eof()
    # ---- turn-taking ---------------------------------------------------------------------------
    def _agent_audible(self) -> bool:
        return self.turn is not None and self.turn.audible

    def _frame(self, p: float) -> None:
        """One VAD frame: the user's speech state, then the turn policy."""
        playing = None
        if self._agent_audible():
            playing = self.turn
            playing.advance(self.clock.now())
        was_speaking = self.speech.speaking
        if self.speech.frame(p, playing, self._lips_until((self.speech.frames + 1) * self.speech.frame_ms)):
            self._partial_is_echo = False  # the user speaks: the ASR's partial is (becoming) theirs
            if playing is not None and self.settings.resume_after_ms is not None:
                stopped = playing.pause(self.clock.now())  # hold its audio until the policy decides
                if stopped is not None:  # the client stops playing now and drops what it holds
                    self._events.append(AgentPauseEvent(playing.turn, stopped, self.media_ms))
                self._sync_llm()
        self._to_asr(self.gate.judge(self.speech.frames * self._frame_samples, self.speech))
        if was_speaking and not self.speech.speaking:
            # the run and its hangover (the last words' end) are sent: the ASR commits their words
            # now, not a step of audio later; then the policy may score the turn
            self._run_sent = self.gate.sent
            self._finalize_asr()
            self._ask_score()
        self._decide(self.speech.now_ms)

    def _view(self, now_ms: float) -> TurnView:
        transcript = self._transcript()
        scored = self._scored is not None and self._scored[0] == strip_trailing_off(transcript)
        score = self._scored[1] if scored else None
        sp, turn, answered = self.speech, self.turn, self._answered
        audible = None if turn is None or turn.voice_from_ms is None else max(0.0, sp.now_ms - turn.voice_from_ms)
        after = answered.silence_ms if turn is not None and answered is not None and answered.turn == turn.turn else None
        return TurnView(now_ms, sp.speaking, sp.speech_ms, sp.silence_ms, transcript, turn is not None, score,
                        lips=self._lips_since_voice(), agent_audible_ms=audible, answered_after_ms=after)

    def _lips_hold_ms(self) -> float:
        """How long speech over still lips holds a turn's end: ``lips_hold_turn_ms``, or
        ``lips_hold_turn_frames`` of the camera's frame intervals when that is longer."""
        hold, frames, interval = self.settings.lips_hold_turn_ms, self.settings.lips_hold_turn_frames, \
            self.lips.frame_interval_ms
        if not hold:
            return 0.0
        return max(hold, frames * interval) if frames and interval is not None else hold

    def _decide(self, now_ms: float) -> None:
        if self._eof:
            return
        if self._held_is_stale():  # the user speaks again: the answer held for the pause is not wanted
            self._drop_held()
        action = self.policy.decide(self._view(now_ms))
        if isinstance(action, Speak) and 0 < self.speech.held_back_ms <= self._lips_hold_ms():
            return  # speech over lips seen still, not for long: maybe the user going on (the score lags)
        if isinstance(action, Speak) and self.turn is None and self._transcript():
            if not self._asr_caught_up():
                return  # the turn's last words are still in the ASR: answer when they are out
            if self._held_is_stale():
                self._drop_held()
            if self._held is not None:
                self._release_held()  # answered ahead, on this very transcript
            else:
                self._start_turn()
        elif isinstance(action, Yield) and self.turn is not None and not (
                action.user_continues and not self._can_reopen()):
            self._stop_turn(interrupted=True, user_continues=action.user_continues)
        elif self.turn is not None and self.turn.paused and not self.speech.speaking:
            if self.speech.silence_ms >= self.settings.resume_after_ms:
                self._resumes += 1  # a backchannel: forget its words (also in the LLM), go on
                self._turn_word0 = len(self._heard_words())
                self._sync_llm()
                at = self.turn.resume()
                if at is not None:  # its audio comes again from the first word not heard whole
                    self._events.append(AgentResumeEvent(self.turn.turn, at, self.media_ms))
        elif self.turn is None:
            self._preempt()

    def _error(self, e: StreamrtError) -> None:
        self._events.append(ErrorEvent(e.code, e.message, e.fatal))
        if e.fatal and not self._eof:
            self.receive_eof()
