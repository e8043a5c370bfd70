"""The user's speech, frame by frame (32 ms VAD frames, in media ms), behind the echo guard.

``UserSpeech.frame(p, agent)`` takes one frame's VAD probability and, while the agent's voice
plays, applies the guard (``DialogueSettings``: a higher probability, a longer run, and an input
level of at least ``echo_level_ratio`` times the level of the agent audio playing). With a camera,
a frame over lips seen ``still`` is never the user's speech, agent playing or not, unless the lips
are seen moving within ``lips_onset_ms`` after it (their score lags the mouth). A speech run
starts after ``min_speech_ms`` of speech frames and ends after ``hangover_ms`` of others.
"""

from __future__ import annotations

import numpy as np

from streamrt.dialogue.playback import AgentTurn
from streamrt.dialogue.settings import DialogueSettings

ECHO_WINDOW_MS = 160.0  # the guard compares the input with the agent's audio played this recently


class UserSpeech:
    """speaking: a speech run is on. heard: the user's voice was heard since ``agent_started``.
    start_ms / end_ms: the current (or last) run's bounds; now_ms: the end of the last frame."""

    def __init__(self, settings: DialogueSettings, frame_ms: float, sample_rate: int):
        self.settings = settings
        self.frame_ms = frame_ms
        self._frame_samples = int(round(frame_ms * sample_rate / 1000))
        self._levels: list[float] = []  # input RMS of the frames not yet scored, in order
        self._tail = np.zeros(0, np.float32)
        self.frames = 0
        self._run_ms = self._gap_ms = 0.0
        self._held_ms = 0.0  # speech frames just before, held back by still lips (at most lips_onset_ms)
        self._held_since: float | None = None  # where the speech still lips hold back began (no gap of hangover_ms since)
        self._held_last = 0.0  # the end of its last frame
        self.speaking = False
        self.heard = False  # ASR words before the user's voice is first heard are not theirs
        self.start_ms = self.end_ms = 0.0
        self.runs = 0  # speech runs so far

    @property
    def now_ms(self) -> float:
        return self.frames * self.frame_ms

    @property
    def building(self) -> bool:
        """Speech frames are coming but not yet enough for a run."""
        return self._run_ms > 0

    @property
    def held_back_ms(self) -> float:
        """How long the audio has heard speech over lips seen still (no gap of ``hangover_ms`` in it;
        0: none): another voice, or the user going on while the lips' score still lags the mouth."""
        return 0.0 if self._held_since is None else self.now_ms - self._held_since

    @property
    def speech_ms(self) -> float:
        return self.end_ms - self.start_ms

    @property
    def silence_ms(self) -> float:
        return 0.0 if self.speaking else self.now_ms - self.end_ms

    def add_audio(self, x: np.ndarray) -> None:
        """The input samples as they go to the VAD: their level per frame (for the guard)."""
        y = np.concatenate([self._tail, x])
        n = len(y) // self._frame_samples
        if n:
            blocks = y[:n * self._frame_samples].reshape(n, self._frame_samples)
            self._levels += np.sqrt(np.mean(np.square(blocks), axis=1)).tolist()
        self._tail = y[n * self._frame_samples:]

    def agent_started(self) -> None:
        """An agent turn begins: the user is not heard again until a speech run starts."""
        self.heard = False

    def frame(self, p: float, agent: AgentTurn | None, lips: str = "unknown") -> bool:
        """One frame's speech probability; ``agent``: the agent turn playing (guarded), or None;
        ``lips``: the user's lips over the last ``lips_window_ms`` (``LipTimeline`` states; unknown
        without a camera). Returns True when a speech run starts at this frame."""
        s = self.settings
        self.frames += 1
        level = self._levels.pop(0) if self._levels else 0.0
        guarded = agent is not None
        threshold = s.echo_threshold if guarded and s.echo_threshold is not None else s.vad_threshold
        min_run = s.min_speech_ms
        if guarded and s.echo_min_speech_ms is not None:  # doubled by each resume of the turn (echo backoff)
            min_run = s.echo_min_speech_ms * 2 ** min(agent.resumes, 4)
        if guarded and s.echo_level_ratio is not None and level < s.echo_level_ratio * agent.playing_level(ECHO_WINDOW_MS):
            p = 0.0  # no louder than the agent's own voice playing: echo
        held = lips == "still" and p >= threshold
        if lips == "still":
            p = 0.0  # a face in view whose lips do not move: not the user's voice (agent playing or not)
        if held:
            if self._held_since is None:
                self._held_since = self.now_ms - self.frame_ms
            self._held_last = self.now_ms
        elif self._held_since is not None and (p >= threshold or self.now_ms - self._held_last >= s.hangover_ms):
            self._held_since = None  # it became the user's speech, or it stopped
        started = False
        if p >= threshold:
            # the frames still lips held back just before count now that the lips are not still
            self._run_ms += self._held_ms + self.frame_ms
            self._held_ms = 0.0
            self._gap_ms = 0.0
            if not self.speaking and self._run_ms >= min_run:
                self.speaking = self.heard = started = True
                self.runs += 1
                self.start_ms = self.now_ms - self._run_ms
            if self.speaking:
                self.end_ms = self.now_ms
        else:
            self._run_ms = 0.0
            credit = s.lips_onset_ms or 0.0
            self._held_ms = min(self._held_ms + self.frame_ms, credit) if held else 0.0
            self._gap_ms += self.frame_ms
            if self.speaking and self._gap_ms >= s.hangover_ms:
                self.speaking = False
        return started


class AsrGate:
    """The user's audio on its way to the ASR, held until the VAD has judged it: speech goes through
    with ``preroll_ms`` before its onset and up to ``tail_ms`` of the silence after it, or until
    ``close_run`` (the session had the ASR finalise the run's words: the rest of its silence would
    only open the next segment); longer silence, the agent's echo and noise are never sent.
    Whisper on long silence drifts (stale hypotheses, invented words) and costs compute for
    nothing; the agent talks for most of a dialogue while the user's microphone sends silence.
    ``tail_ms`` None: everything is sent (the ASR sees the whole timeline)."""

    def __init__(self, preroll_ms: float, tail_ms: float | None, sample_rate: int):
        self.preroll = int(preroll_ms * sample_rate / 1000)
        self.tail_ms = tail_ms
        self._held: list[np.ndarray] = []
        self._start = 0  # sample index of the first held sample
        self._end = 0  # sample index after the last held sample
        self.sent = 0  # samples sent to the ASR
        self.sending = False  # the last judge sent audio (a run's speech or its tail)
        self.skipped = 0  # samples never sent
        self._closed = False  # the run's tail is not sent (``close_run``) until speech starts again

    def add(self, x: np.ndarray) -> None:
        self._held.append(x)
        self._end += len(x)

    def judge(self, until: int, speech: UserSpeech) -> np.ndarray | None:
        """The VAD has judged the audio up to sample ``until``: what of it goes to the ASR now."""
        if not self._held:
            return None
        held = np.concatenate(self._held) if len(self._held) > 1 else self._held[0]
        until = min(until, self._end)
        if speech.speaking:
            self._closed = False
        # after close_run, speech frames that do not make a run yet are held (within the preroll)
        if self.tail_ms is None or speech.speaking or (not self._closed and (
                speech.building or (speech.runs and speech.silence_ms <= self.tail_ms))):
            out, rest = held[:until - self._start], held[until - self._start:]
            self._held, self._start = ([rest] if len(rest) else []), until
            self.sent += len(out)
            self.sending = True
            return out if len(out) else None
        self.sending = False
        drop = max(0, until - self.preroll - self._start)
        self._held, self._start = ([held[drop:]] if drop < len(held) else []), self._start + drop
        self.skipped += drop
        return None

    def close_run(self) -> None:
        """The speech run that just ended is complete for the ASR: none of the silence after it is
        sent; the next audio sent is the next run's, with its preroll (no effect with ``tail_ms``
        None: everything is sent)."""
        self._closed = True

    def flush(self) -> np.ndarray | None:
        """Everything held (end of input)."""
        if not self._held:
            return None
        out = np.concatenate(self._held)
        self._held, self._start = [], self._end
        self.sent += len(out)
        return out
