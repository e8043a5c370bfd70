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
- User speech while the agent plays pauses its audio at once; a ``Yield`` stops it: the LLM reply
  and the TTS stream are cancelled, ``InterruptedEvent`` carries what the user heard (playback
  position mapped through the TTS units), and the LLM's history keeps only that (``ReplyHeard``).
  Speech the policy does not yield to (a backchannel) resumes the agent after
  ``resume_after_ms`` of silence, and its words are dropped from the user's next turn.
- With a camera (``receive_video``, models with ``lips``), each frame goes to a lip-activity stream
  on the same scheduler and its scores into a ``LipTimeline``: while the agent plays, speech over
  lips seen still for ``lips_window_ms`` is not the user's (it neither pauses nor interrupts the
  agent); moving lips, no face or no frames leave the audio-only guard as it is.

Times: turn-taking runs on the user's media clock (VAD frames), pacing on the injected clock; the
core reads no other time. The feed path never raises: bad input becomes an ``ErrorEvent``.
"""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np

from policies.turn_taking.base import Speak, TurnPolicy, TurnView, Yield
from streamrt.audio import StreamResampler, check_format, decode_pcm, downmix
from streamrt.clock import Clock
from streamrt.dialogue.events import (AgentAudioEvent, AgentTextEvent, AgentTurnEndEvent, AgentTurnStartEvent,
                                      DialogueEndEvent, DialogueEvent, InterruptedEvent, UserCommitEvent,
                                      UserPartialEvent, UserTurnEndEvent)
from streamrt.dialogue.models import DialogueModels, StepHost
from streamrt.dialogue.playback import AgentTurn
from streamrt.dialogue.settings import DialogueSettings
from streamrt.dialogue.speech import AsrGate, UserSpeech
from streamrt.errors import InputError, LimitExceeded, SessionClosed, StreamrtError
from streamrt.session import Session, SessionLimits
from streamrt.stream_session import StepOutput, StreamSession
from streamrt.tasks.lip_timeline import LipTimeline
from streamrt.types import (AudioChunk, CommitEvent, EndEvent, ErrorEvent, PartialEvent, ReplyHeard, StepPending,
                            TextDelta, VideoFrame)

SAMPLE_RATE = 16000  # the user's audio inside the session (ASR and VAD both take it)
_ids = itertools.count(1)


def strip_trailing_off(text: str) -> str:
    """The words without the ellipsis Whisper writes where a speaker trails off mid-turn ("I have been
    sleeping badly and..."): the LLM reads such a text as finished (P(end of turn) 0.08-0.3 against
    0.000 without it) and the semantic policy would take over the pause."""
    for mark in ("...", "\u2026"):
        if text.endswith(mark):
            return text[: -len(mark)].rstrip()
    return text


class DialogueSession:
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
        self._asked_asr_at = -1  # gate.sent when the ASR was last asked to step its pending audio
        self._run_sent = 0  # gate.sent when the last speech run ended: the ASR must read this far
        # the agent
        self._turns = 0
        self.turn: AgentTurn | None = None
        self._interruptions = 0
        self._resumes = 0
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

    def receive_video(self, frame: VideoFrame) -> None:
        """A camera frame, ``time_ms`` on the audio's media clock (ms from the first audio sample):
        to the lip-activity stream (opened at the first frame); errors become events."""
        try:
            if self._eof:
                raise SessionClosed("video after end of stream is ignored")
            if self.models.lips is None:
                raise InputError("this dialogue has no lip-activity model (DialogueModels.lips)",
                                 code="video_unavailable")
            if self.video is None:
                self.video = StreamSession(self.models.lips.create_stream(), self.clock, session_id=f"{self.id}-video")
                self.host.add(self.video, self._on_output, model=self.models.lips)
            self.video.receive(frame)
            self.host.wake(self.video)
        except StreamrtError as e:
            self._error(e)

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
        for sub in (*self._inputs(), self.tts):
            if sub is not None:
                self.host.cancel(sub)
        self.tts = None
        self.turn = None
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
                "asr_audio_ms": round(1000.0 * self.gate.sent / SAMPLE_RATE, 1),
                "turn_policy": self.policy.describe()}

    # ---- routing -----------------------------------------------------------------------------
    def _on_output(self, sub: StreamSession) -> None:
        self._pump()
        if self.on_update is not None:
            self.on_update()

    def _pump(self) -> None:
        for e in self.asr.events():
            self._asr_event(e)
        for e in self.llm.events():
            self._llm_event(e)
        if self.tts is not None:
            for e in self.tts.events():
                self._tts_event(e)
        for e in self.video.events() if self.video is not None else ():  # before the VAD frames it judges
            if isinstance(e, StepOutput):
                self.lips.add(e.result.lips)
            else:
                self._sub_event(e)
        for e in self.vad.events():  # after the words: a frame's decision sees the latest transcript
            if isinstance(e, StepOutput):
                for p in e.result.frame_scores:
                    self._frame(p)
            else:
                self._sub_event(e)
        self._release()
        if self._eof and not self._ended and all(s.ended for s in self._inputs()) and self.turn is None:
            self._ended = True
            self._events.append(DialogueEndEvent(self.media_ms, self.summary()))

    def _sub_event(self, e) -> None:
        if isinstance(e, ErrorEvent):
            self._events.append(e)
            if e.fatal and not self._eof:
                self.receive_eof()

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
        if (self.policy.wants_end_of_turn_p and text and self._score_for is None and self._floor_open()
                and not self.speech.speaking and (self._scored is None or self._scored[0] != text)):
            self._score_for = text
            self.llm.receive(TextDelta("", score_end=True))
            self.host.wake(self.llm)

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
        if self.speech.frame(p, playing, self._lips_state(playing)):
            self._partial_is_echo = False  # the user speaks: the ASR's partial is (becoming) theirs
            if playing is not None and self.settings.resume_after_ms is not None:
                playing.paused = True  # the user speaks over the agent: hold its audio until the policy decides
                self._sync_llm()
        if was_speaking and not self.speech.speaking:
            self._ask_score()  # the user paused: is the turn complete?
        was_sending = self.gate.sending
        self._to_asr(self.gate.judge(self.speech.frames * self._frame_samples, self.speech))
        if was_speaking and not self.speech.speaking:
            self._run_sent = self.gate.sent  # the run and its hangover (the last words' end) are sent
        if was_sending and not self.gate.sending:
            self._ask_asr_step()  # the run's audio is all sent: its last words must not wait for the next run
        self._decide(self.speech.now_ms)

    def _lips_state(self, playing: AgentTurn | None) -> str:
        """The user's lips over the last ``lips_window_ms`` up to the end of the VAD frame being
        judged; unknown without a camera (then the guard is audio only, as without video)."""
        window = self.settings.lips_window_ms
        if playing is None or self.video is None or window is None:
            return "unknown"
        end = (self.speech.frames + 1) * self.speech.frame_ms
        return self.lips.state_between(end - window, end)

    def _view(self, now_ms: float) -> TurnView:
        transcript = self._transcript()
        scored = self._scored is not None and self._scored[0] == strip_trailing_off(transcript)
        score = self._scored[1] if scored else None
        sp = self.speech
        return TurnView(now_ms, sp.speaking, sp.speech_ms, sp.silence_ms, transcript, self.turn is not None, score)

    def _decide(self, now_ms: float) -> None:
        if self._eof:
            return
        action = self.policy.decide(self._view(now_ms))
        if isinstance(action, Speak) and self.turn is None and self._transcript():
            if not self._asr_caught_up():
                return  # the turn's last words are still in the ASR: answer when they are out
            self._start_turn()
        elif isinstance(action, Yield) and self.turn is not None:
            self._stop_turn(interrupted=True)
        elif self.turn is not None and self.turn.paused and not self.speech.speaking:
            if self.speech.silence_ms >= self.settings.resume_after_ms:
                self._resumes += 1  # a backchannel: forget its words (also in the LLM), go on
                self._turn_word0 = len(self._heard_words())
                self._sync_llm()
                self.turn.paused = False

    def _asr_caught_up(self) -> bool:
        """Whether the ASR has transcribed the audio of the last speech run (to its end and the
        VAD's hangover after it), so the transcript holds the turn's last words. If not, it is
        asked to step the audio sent so far now rather than wait for a full step of audio that the
        gate may never send (it stops ``asr_silence_tail_ms`` after the speech); the policy's next
        frame decides again on the transcript that comes out. An ASR that cannot (no
        ``StepPending`` in its ``input_kinds``) is not waited for."""
        if StepPending not in self.asr.stream.input_kinds:
            return True
        run_ms = 1000.0 * self._run_sent / SAMPLE_RATE
        if not self.asr.in_step and self.asr.stream.consumed_ms >= run_ms - 1e-6:
            return True
        self._ask_asr_step()
        return False

    def _ask_asr_step(self) -> None:
        """Have the ASR step the audio sent so far now, short of a full step (once per amount)."""
        if StepPending in self.asr.stream.input_kinds and self._asked_asr_at != self.gate.sent:
            self._asked_asr_at = self.gate.sent
            self.asr.receive(StepPending())
            self.host.wake(self.asr)

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
        self._events.append(UserTurnEndEvent(answered, self.media_ms))
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
            self._events.append(InterruptedEvent(turn.turn, heard, self.media_ms))
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

    def _error(self, e: StreamrtError) -> None:
        self._events.append(ErrorEvent(e.code, e.message, e.fatal))
        if e.fatal and not self._eof:
            self.receive_eof()
