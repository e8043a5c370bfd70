"""Run scripted dialogues through a voice-agent session in virtual time (``streamrt dialogue eval``).

The user is simulated as a microphone that streams in real time, silence included: a
:class:`UserTrack` holds the script's clips at their places on the dialogue's clock and the
runner feeds the session every sample up to the clock's now. The clock is a
:class:`VirtualClock`: it moves by the audio's real time while the models are idle (no waiting
for real) and by the measured compute while they work, so a step that takes 80 ms lets 80 ms of
user audio pile up, as it would live, and every event is stamped with the time it would leave a
live session. The agent's audio is "played" in real time from its release (the session paces it;
the metrics replay it the same way, ``metrics.dialogue``); a backchannel or interruption is
placed ``at_ms`` into the agent's answer, mixed into the user's input. A
:class:`~streamrt.evaluation.dialogue_room.Room` adds what else the microphone and a camera get:
the agent's echo, background speech, and frames of the user's face (issue 20).

The order of a script: turn i is spoken; the runner waits until the agent has answered (an agent
turn starting after the user's last resume and still playing after the user's voice ended, as
``metrics.dialogue`` counts an answer) and then been silent for the script's ``gap_ms``, or
until ``answer_timeout_s`` passed without an answer; then turn i + 1. After the last turn, end of
input, and the session's ``end``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from metrics.dialogue import DialogueLog, TimedEvent, UserSpeech, agent_turns
from streamrt.errors import StreamrtError
from streamrt.evaluation.dialogue_room import BACKGROUND_LINES, Room
from streamrt.evaluation.dialogue_script import ClipSynth, Overlay, Script
from streamrt.types import VideoFrame

SAMPLE_RATE = 16000


class VirtualClock:
    """Seconds = the time skipped by :meth:`advance` (idle waits) + the compute measured since the
    clock was made: CPU seconds of this process (``compute="process"``: steady on a shared machine,
    but N busy threads count N times), wall seconds (``"wall"``: contention counts too), or none
    (``"none"``: the latency an infinitely fast machine would get, the policies' own delays)."""

    def __init__(self, compute: str = "process"):
        if compute not in COMPUTE_CLOCKS:
            raise ValueError(f"compute clock must be one of {', '.join(COMPUTE_CLOCKS)}, got {compute!r}")
        self._measure = COMPUTE_CLOCKS[compute]
        self._start = self._measure()
        self._skipped = 0.0

    def now(self) -> float:
        return self._skipped + (self._measure() - self._start)

    def compute_s(self) -> float:
        return self._measure() - self._start

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        self._skipped += seconds


COMPUTE_CLOCKS: dict[str, Callable[[], float]] = {
    "process": time.process_time, "wall": time.perf_counter, "none": lambda: 0.0}


class AgentSession(Protocol):
    """What the runner needs of a dialogue session (``streamrt.dialogue.session.DialogueSession``)."""

    def receive_audio(self, samples: np.ndarray) -> None: ...

    def receive_video(self, frame: VideoFrame) -> None: ...

    def receive_eof(self) -> None: ...

    def events(self) -> list: ...

    @property
    def ended(self) -> bool: ...

    def close(self) -> None: ...


class Stepper(Protocol):
    """The scheduler the session's models run on, as the runner waits on it."""

    @property
    def idle(self) -> bool: ...

    async def wait_progress(self) -> None: ...


class UserTrack:
    """The user's microphone signal: clips placed at sample positions, summed where they overlap,
    silence elsewhere."""

    def __init__(self) -> None:
        self._clips: list[tuple[int, np.ndarray]] = []
        self.end = 0

    def place(self, start: int, clip: np.ndarray) -> int:
        """Put ``clip`` at sample ``start``; returns the sample after its end."""
        self._clips.append((start, clip))
        self.end = max(self.end, start + len(clip))
        return start + len(clip)

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros(max(0, stop - start), dtype=np.float32)
        for at, clip in self._clips:
            lo, hi = max(start, at), min(stop, at + len(clip))
            if lo < hi:
                out[lo - start:hi - start] += clip[lo - at:hi - at]
        return out


@dataclass
class RunnerSettings:
    feed_ms: float = 20.0
    """User audio per feed when the models are idle, ms (a microphone frame)."""
    answer_timeout_s: float | None = 20.0
    """Go on to the next turn after this long without an answer, s (None: wait for ever)."""
    end_timeout_s: float = 30.0
    """After end of input, the session must end within this, s of virtual time."""
    max_dialogue_s: float | None = 600.0
    """A script running longer than this on the virtual clock fails, s (None disables)."""


@dataclass
class ScriptRun:
    log: DialogueLog
    agent_audio: dict[int, list[tuple[float, np.ndarray, int]]]  # turn -> (offset_ms, samples, rate)
    agent_text: dict[int, str]  # turn -> all it said (agent_turn_end)
    interrupted: set[int]
    virtual_s: float
    compute_s: float
    errors: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)  # the session's (``end`` event)


TIMED_DATA = ("end_of_turn_p", "silence_ms", "user_continues")
"""Event fields kept in the log's ``TimedEvent.data`` (the end-of-turn diagnostics; an
``interrupted`` turn withdrawn because the user went on with the turn it answered)."""


def _timed(t_ms: float, e: Any) -> TimedEvent:
    kind = e.type
    if kind == "agent_audio":
        return TimedEvent(t_ms, kind, e.turn, 1000.0 * len(e.samples) / e.sample_rate)
    text = getattr(e, "heard_text", None) if kind == "interrupted" else getattr(e, "text", None)
    if kind == "error":
        text = f"{e.code}: {e.message}"
    elif kind == "lips":  # each scored frame's media time and state, e.g. "1233:a 1300:s 1367:u"
        text = " ".join(f"{a.time_ms:.0f}:{a.state[0]}" for a in e.frames)
    data = {k: getattr(e, k) for k in TIMED_DATA if hasattr(e, k)}
    return TimedEvent(t_ms, kind, getattr(e, "turn", None), 0.0, text or "", data)


class _Conversation:
    """The script's side of one dialogue: what the user says when (the module docstring's order)."""

    def __init__(self, script: Script, synth: ClipSynth, settings: RunnerSettings, room: Room | None = None):
        self.script, self.synth, self.settings, self.room = script, synth, settings, room
        self._background = 0  # background lines said
        self.track = UserTrack()
        self.user: list[UserSpeech] = []
        self.next_turn = 0
        self.expecting: UserSpeech | None = None  # the last turn/interruption awaiting an answer
        self.pending: list[tuple[str, Overlay]] = []  # overlays of the turn being answered
        self.answer_turn: int | None = None
        self.silent_since_ms: float | None = None
        self.done = False

    def _say(self, kind: str, at_ms: float, parts: Sequence[str], pause_s: float) -> UserSpeech:
        pos = round(at_ms * SAMPLE_RATE / 1000)
        onset, pauses = pos, []
        for k, text in enumerate(parts):
            if k:
                pauses.append((1000.0 * pos / SAMPLE_RATE, 1000.0 * pos / SAMPLE_RATE + 1000.0 * pause_s))
                pos += round(pause_s * SAMPLE_RATE)
            if kind == "background":
                clip = self.synth(text, self.room.background_voice(self.script.voice))
                clip = clip * np.float32(self.room.settings.background_gain)
            else:
                clip = self.synth(text, self.script.voice)
            pos = self.track.place(pos, clip)
        speech = UserSpeech(kind, 1000.0 * onset / SAMPLE_RATE, 1000.0 * pos / SAMPLE_RATE, tuple(pauses),
                            " ".join(parts))
        self.user.append(speech)
        return speech

    def start_turn(self, at_ms: float) -> None:
        turn = self.script.turns[self.next_turn]
        self.next_turn += 1
        self.expecting = self._say("turn", at_ms, turn.parts, turn.pause_s)
        self.pending = [(k, o) for k, o in (("backchannel", turn.backchannel), ("interruption", turn.interrupt))
                        if o is not None]
        if not self.pending and self.room is not None and self.room.settings.background:
            line = BACKGROUND_LINES[self._background % len(BACKGROUND_LINES)]
            self._background += 1
            self.pending = [("background", Overlay(line, self.room.settings.background_at_ms))]
        self.answer_turn = None
        self.silent_since_ms = None

    def update(self, now_ms: float, fed_ms: float, events: Sequence[TimedEvent], turns_heard) -> None:
        """React to the session's events up to ``now_ms``; user audio up to ``fed_ms`` is sent."""
        if self.done:
            return
        if self.expecting is None:  # the dialogue opens with gap_ms of silence
            if now_ms >= self.script.gap_ms:
                self.start_turn(max(fed_ms, now_ms))
            return
        speaking = [t for t in turns_heard if t.start_ms <= now_ms < t.stop_ms]
        if self.answer_turn is None and fed_ms >= self.expecting.offset_ms:  # as metrics.dialogue answers
            answer = next((t for t in turns_heard if t.start_ms >= self.expecting.last_resume_ms
                           and t.stop_ms > self.expecting.offset_ms), None)
            if answer is not None:
                self.answer_turn = answer.turn
                for kind, o in self.pending:  # placed at_ms into the answer's playback (not in the past)
                    at = max(answer.start_ms + o.at_ms, fed_ms)
                    speech = self._say(kind, at, [o.text], 1.0)
                    if kind == "interruption":
                        self.expecting = speech
                        self.answer_turn = None
                self.pending = []
        user_busy = fed_ms < 1000.0 * self.track.end / SAMPLE_RATE
        if speaking or user_busy:
            self.silent_since_ms = None
            return
        if self.silent_since_ms is None:
            self.silent_since_ms = now_ms
        waited = now_ms - self.expecting.offset_ms
        timed_out = self.settings.answer_timeout_s is not None and waited >= 1000.0 * self.settings.answer_timeout_s
        if (self.answer_turn is not None and now_ms - self.silent_since_ms >= self.script.gap_ms) or timed_out:
            if self.next_turn < len(self.script.turns):
                self.start_turn(max(fed_ms, now_ms))
            else:
                self.done = True


async def run_script(script: Script, session: AgentSession, stepper: Stepper, clock: VirtualClock,
                     synth: ClipSynth, settings: RunnerSettings | None = None, room: Room | None = None) -> ScriptRun:
    """Play ``script`` to ``session`` (new, on ``clock``, its models on ``stepper``) and log it;
    ``room``: echo, background speech and a camera (new for each script)."""
    settings = settings or RunnerSettings()
    conv = _Conversation(script, synth, settings, room)
    summary: dict = {}
    t0 = clock.now()
    compute0 = clock.compute_s()
    fed = 0  # samples of user audio sent
    log: list[TimedEvent] = []
    audio: dict[int, list[tuple[float, np.ndarray, int]]] = {}
    said: dict[int, str] = {}
    interrupted: set[int] = set()
    errors: list[str] = []
    eof_at: float | None = None
    piece = max(1, round(settings.feed_ms * SAMPLE_RATE / 1000))

    def now_ms() -> float:
        return 1000.0 * (clock.now() - t0)

    while True:
        due = int(now_ms() * SAMPLE_RATE / 1000)
        if eof_at is None and due - fed >= piece:
            mic = conv.track.read(fed, due)
            if room is not None:
                for frame in room.frames(1000.0 * due / SAMPLE_RATE, conv.user):  # taken with this audio
                    session.receive_video(frame)
                extra = room.mic(fed, due)
                if extra is not None:
                    mic += extra
            session.receive_audio(mic)
            fed = due
        drained = session.events()
        t = now_ms()  # when they leave the session: one time for all of one drain
        for e in drained:
            log.append(_timed(t, e))
            if room is not None:
                room.event(t, e)
            if e.type == "agent_audio":
                audio.setdefault(e.turn, []).append((e.offset_ms, e.samples, e.sample_rate))
            elif e.type == "agent_turn_end":
                said[e.turn] = e.text
            elif e.type == "interrupted":
                interrupted.add(e.turn)
            elif e.type == "error":
                errors.append(f"{script.id}: {e.code}: {e.message}")
            elif e.type == "end":
                summary = dict(e.summary)
        if session.ended:
            break
        t = now_ms()
        fed_ms = 1000.0 * fed / SAMPLE_RATE
        if eof_at is None:
            conv.update(t, fed_ms, log, agent_turns(log))
            if conv.done:
                session.receive_eof()
                eof_at = t
        elif t - eof_at > 1000.0 * settings.end_timeout_s:
            raise StreamrtError(f"script {script.id}: the session did not end {settings.end_timeout_s} s after "
                                "end of input (end_timeout_s)")
        if settings.max_dialogue_s is not None and t > 1000.0 * settings.max_dialogue_s:
            raise StreamrtError(f"script {script.id}: dialogue ran past max_dialogue_s = {settings.max_dialogue_s} s "
                                f"at turn {conv.next_turn} of {len(script.turns)}")
        await asyncio.sleep(0)  # let the scheduler's loop see new input
        if stepper.idle:
            wait = (fed + piece) * 1000.0 / SAMPLE_RATE - now_ms()
            clock.advance(max(wait, 0.0) / 1000.0)
        else:
            await stepper.wait_progress()
    return ScriptRun(DialogueLog(script.id, tuple(conv.user), tuple(log)), audio, said, interrupted,
                     clock.now() - t0, clock.compute_s() - compute0, errors, summary)


class ManagedStepper(Stepper, Protocol):
    """A stepper that runs on the event loop (the real ``Scheduler``)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def run_dialogues(scripts: Sequence[Script], make_session: Callable[[], AgentSession],
                        stepper: ManagedStepper, clock: VirtualClock, synth: ClipSynth,
                        settings: RunnerSettings | None = None,
                        progress: Callable[[ScriptRun], None] | None = None,
                        make_room: Callable[[], Room] | None = None) -> list[ScriptRun]:
    """Each script through its own new session, one after another, on one started ``stepper``;
    ``make_room``: a new :class:`Room` per script (None: the user alone, no camera)."""
    for s in scripts:  # every clip made before any model runs: a missing synthesizer fails first
        for t in s.turns:
            for text in [*t.parts, *(o.text for o in (t.backchannel, t.interrupt) if o is not None)]:
                synth(text, s.voice)
        if make_room is not None and make_room().settings.background:
            voice = make_room().background_voice(s.voice)
            for line in BACKGROUND_LINES:
                synth(line, voice)
    await stepper.start()
    runs = []
    try:
        for s in scripts:
            session = make_session()
            try:
                runs.append(await run_script(s, session, stepper, clock, synth, settings,
                                             None if make_room is None else make_room()))
            finally:
                session.close()
            if progress is not None:
                progress(runs[-1])
    finally:
        await stepper.stop()
    return runs
