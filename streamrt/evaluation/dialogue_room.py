"""The room around the simulated user of ``streamrt dialogue eval``: the agent's voice coming back
into the microphone (echo), another voice talking (background speech), and a camera on the user's
face. Issue 20's figures: speech that is not the user's must not interrupt the agent when the
camera shows still lips, and the user's own interruptions (moving lips) must still get through.

    room = Room(RoomSettings(echo_gain=0.5, background=True, video="face"), frames=face_loops(...))
    ... the runner (``run_script``) calls room.event(t_ms, e) for every session event,
    room.frames(until_ms, user) before each piece of microphone audio, and adds room.mic(a, b).

- **Echo** (:class:`EchoPath`): each ``agent_audio`` chunk is played as the client plays it (the
  playback model of ``metrics.dialogue``: from its release, after the turn's previous chunk, cut at
  ``agent_pause`` and ``interrupted``), resampled to 16 kHz, scaled by ``echo_gain`` (an amplitude ratio; 0.5 = -6 dB)
  and delayed by ``echo_delay_ms`` (the speaker-to-microphone path and the devices' buffers). A
  chunk released at time t plays from t or later, so its echo always lands on microphone audio not
  yet sent: the simulation is causal and exact on the runner's clock.
- **Background speech**: another flite voice says a sentence ``background_at_ms`` into each
  agent answer to a turn with no scripted backchannel or interruption (so it never overlaps the
  user's own speech), at ``background_gain`` times the user's level. It is logged as ``background``
  speech (``metrics.dialogue``): it expects nothing and must not stop the agent.
- **Camera** (``video``): frames at ``fps`` on the audio's media clock, showing the animated real
  photo of ``streamrt.bench.talking_face`` (docs/video.md, "How it is tested"): ``face``: the lips
  move exactly while the user's voice sounds (turns, interruptions, backchannels; still in
  mid-turn pauses, under echo and background speech; each stretch of voice starts the talking
  loop at a seeded random phase); ``still``: the lips never move (the user
  says nothing the camera could see: every barge-in is vetoed); ``off``: no camera. The frames are
  rendered once before the dialogues (a loop of talking and a loop of still frames, each with the
  head's sway and sensor noise) and picked by time, so rendering costs the virtual clock nothing;
  the real FaceMesh runs on every frame inside the agent (its cost counts, as it would live).
  What a real camera's path does to the frames (:class:`CameraPath`): each frame arrives
  ``video_delay_ms`` plus a random 0..``video_jitter_ms`` after it was taken, in the order taken
  (a WebSocket is one TCP stream and a WebRTC receiver's jitter buffer hands frames on in order,
  so a frame held up holds up the ones behind it), and a fraction ``video_drop`` never arrives
  (lost, or a camera that skips frames in low light: a varying rate). Frames keep the media time
  they were taken at; they are late, not re-timed. Seeded: the same room gives the same frames.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from metrics.dialogue import UserSpeech
from streamrt.errors import ConfigError
from streamrt.types import VideoFrame

SAMPLE_RATE = 16000
VIDEO_MODES = ("off", "face", "still")
MAX_VIDEO_LATE_MS = 10_000.0  # the latest a simulated frame may arrive (ms after it was taken)
BACKGROUND_LINES = (
    "And now the weather for the weekend, sunny with a few clouds in the afternoon.",
    "The match ended in a draw after a very long and tiring second half.",
    "Traffic is heavy on the main road into the city this evening.",
    "Scientists say the new bridge will be finished by the end of next year.",
)


@dataclass(frozen=True)
class RoomSettings:
    """echo_gain: the agent's voice back into the microphone, amplitude ratio to what was played
    (None: no echo). echo_delay_ms: its delay. background: another voice talks into answers;
    background_gain: its level over the user's (amplitude ratio); background_at_ms: where in the
    answer it starts. video: off, face or still (module docstring); fps: camera frames per second;
    video_delay_ms: every frame arrives this late (ms after it was taken); video_jitter_ms: plus a
    random 0..this many ms, frames kept in order (module docstring); video_drop: the fraction of
    frames that never arrive, in [0, 1); video_seed: the seed of the jitter, the drops and the
    talking loop's phase at each stretch of voice."""

    echo_gain: float | None = None
    echo_delay_ms: float = 30.0
    background: bool = False
    background_gain: float = 1.0
    background_at_ms: float = 800.0
    video: str = "off"
    fps: float = 15.0
    video_delay_ms: float = 0.0
    video_jitter_ms: float = 0.0
    video_drop: float = 0.0
    video_seed: int = 0

    def __post_init__(self) -> None:
        if self.video not in VIDEO_MODES:
            raise ConfigError(f"video must be one of {', '.join(VIDEO_MODES)}, got {self.video!r}")
        for name in ("echo_delay_ms", "background_gain", "background_at_ms"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"RoomSettings.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.echo_gain is not None and not self.echo_gain > 0:
            raise ConfigError(f"RoomSettings.echo_gain must be > 0 (an amplitude ratio) or None, got {self.echo_gain!r}")
        if not 1 <= self.fps <= 60:
            raise ConfigError(f"RoomSettings.fps must be in [1, 60] frames/s, got {self.fps!r}")
        for name in ("video_delay_ms", "video_jitter_ms"):
            if not 0 <= getattr(self, name) <= MAX_VIDEO_LATE_MS:
                raise ConfigError(f"RoomSettings.{name} must be in [0, {MAX_VIDEO_LATE_MS:.0f}] ms, "
                                  f"got {getattr(self, name)!r}")
        if not 0 <= self.video_drop < 1:
            raise ConfigError(f"RoomSettings.video_drop must be a fraction of frames in [0, 1), got {self.video_drop!r}")
        if self.video == "off" and (self.video_delay_ms or self.video_jitter_ms or self.video_drop):
            raise ConfigError("video_delay_ms, video_jitter_ms and video_drop need a camera (video face or still), "
                              "got video 'off'")

    def describe(self) -> dict[str, Any]:
        gain = self.echo_gain
        return {"echo_gain": gain, "echo_db": None if gain is None else round(20 * np.log10(gain), 1),
                "echo_delay_ms": self.echo_delay_ms if gain is not None else None, "background": self.background,
                "background_gain": self.background_gain if self.background else None, "video": self.video,
                "fps": self.fps if self.video != "off" else None,
                **({"video_delay_ms": self.video_delay_ms, "video_jitter_ms": self.video_jitter_ms,
                    "video_drop": self.video_drop, "video_seed": self.video_seed} if self.video != "off" else {})}


def parse_gain(text: str) -> float:
    """"-6dB" / "-6 db" (decibels) or "0.5" (an amplitude ratio) -> the ratio."""
    t = text.strip().lower().replace(" ", "")
    try:
        return float(10 ** (float(t[:-2]) / 20)) if t.endswith("db") else float(t)
    except ValueError:
        raise ConfigError(f"a level is a ratio (0.5) or decibels (-6dB), got {text!r}") from None


class EchoPath:
    """The agent's played audio at the microphone (module docstring): placed as chunks are
    released, cut where the client drops them, read by sample range."""

    def __init__(self, gain: float, delay_ms: float):
        self.gain, self.delay = gain, int(round(delay_ms * SAMPLE_RATE / 1000))
        self._clips: list[list] = []  # [start sample, samples, turn]
        self._next: dict[int, int] = {}  # turn -> the sample where its next chunk plays

    def agent_audio(self, t_ms: float, turn: int, samples: np.ndarray, rate: int) -> None:
        x = np.asarray(samples, np.float32)
        if rate != SAMPLE_RATE:  # chunk by chunk, whole (a streaming resampler would hold back its tail)
            import soxr

            x = soxr.resample(x, rate, SAMPLE_RATE, quality="HQ")
        x = x * np.float32(self.gain)
        start = max(int(round(t_ms * SAMPLE_RATE / 1000)) + self.delay, self._next.get(turn, 0))
        self._next[turn] = start + len(x)
        if len(x):
            self._clips.append([start, x.astype(np.float32), turn])

    def paused(self, t_ms: float, turn: int) -> None:
        """``agent_pause``: the client stops playing and drops what it holds; audio sent again
        after ``agent_resume`` plays from its release."""
        cut = int(round(t_ms * SAMPLE_RATE / 1000)) + self.delay
        for c in self._clips:
            if c[2] == turn and c[0] + len(c[1]) > cut:
                c[1] = c[1][:max(0, cut - c[0])]
        if turn in self._next:
            self._next[turn] = min(self._next[turn], cut)

    def interrupted(self, t_ms: float, turn: int) -> None:
        self.paused(t_ms, turn)
        self._next[turn] = 1 << 62  # nothing of it plays again

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros(max(0, stop - start), dtype=np.float32)
        for at, clip, _ in self._clips:
            lo, hi = max(start, at), min(stop, at + len(clip))
            if lo < hi:
                out[lo - start:hi - start] += clip[lo - at:hi - at]
        self._clips = [c for c in self._clips if c[0] + len(c[1]) > stop]  # the rest is in the past
        return out


class CameraPath:
    """When each camera frame reaches the agent (module docstring): ``arrival(t_ms)`` for the frame
    taken at ``t_ms`` (frames asked for in the order taken), or None when it never arrives."""

    def __init__(self, delay_ms: float = 0.0, jitter_ms: float = 0.0, drop: float = 0.0, seed: int = 0):
        self.delay_ms, self.jitter_ms, self.drop = delay_ms, jitter_ms, drop
        self._rng = np.random.default_rng(seed)
        self._last = -np.inf  # the previous frame's arrival: none overtakes it

    def arrival(self, t_ms: float) -> float | None:
        late, lost = self._rng.uniform(0.0, self.jitter_ms), self._rng.random() < self.drop  # both drawn always
        if lost:
            return None
        self._last = max(self._last, t_ms + self.delay_ms + late)
        return self._last


@dataclass(frozen=True)
class FaceLoops:
    """Frames rendered once: ``talk`` and ``still`` loops of the animated photo at one rate."""

    fps: float
    talk: tuple[np.ndarray, ...]
    still: tuple[np.ndarray, ...]


def face_loops(landmarker, fps: float, loop_ms: float = 4000.0) -> FaceLoops:
    """The astronaut photo (``streamrt.bench.talking_face``) talking and still, ``loop_ms`` each."""
    from streamrt.bench.talking_face import astronaut_face

    face = astronaut_face(landmarker)
    talk = face.render(((0.0, loop_ms, "talk"),), fps)
    still = face.render(((0.0, loop_ms, "still"),), fps)
    return FaceLoops(fps, tuple(f[1] for f in talk), tuple(f[1] for f in still))


def voice_since(t_ms: float, user: Sequence[UserSpeech]) -> float | None:
    """Where the stretch of the user's voice sounding at ``t_ms`` began (a turn's, interruption's or
    backchannel's onset, or the end of a pause in it), or None when it does not sound."""
    for u in user:
        if u.kind != "background" and u.onset_ms <= t_ms < u.offset_ms:
            if any(a <= t_ms < b for a, b in u.pauses):
                return None
            return max([u.onset_ms, *(b for _, b in u.pauses if b <= t_ms)])
    return None


def lips_move(t_ms: float, user: Sequence[UserSpeech]) -> bool:
    """The user's voice sounds at ``t_ms`` (a turn, interruption or backchannel; not in a pause)."""
    return voice_since(t_ms, user) is not None


class Room:
    """One dialogue's room (a new one per script)."""

    def __init__(self, settings: RoomSettings, frames: FaceLoops | None = None):
        if settings.video != "off" and (frames is None or frames.fps != settings.fps):
            raise ConfigError(f"video {settings.video!r} needs face loops rendered at {settings.fps} fps")
        self.settings = settings
        self.loops = frames
        self.echo = EchoPath(settings.echo_gain, settings.echo_delay_ms) if settings.echo_gain is not None else None
        self._frame = 0  # the next camera frame to take
        self.camera = CameraPath(settings.video_delay_ms, settings.video_jitter_ms, settings.video_drop,
                                 settings.video_seed)
        self._on_the_way: deque[tuple[float, VideoFrame]] = deque()  # (arrival ms, frame) taken, not yet in

    @property
    def video(self) -> bool:
        return self.settings.video != "off"

    def event(self, t_ms: float, e: Any) -> None:
        if self.echo is None:
            return
        if e.type == "agent_audio":
            self.echo.agent_audio(t_ms, e.turn, e.samples, e.sample_rate)
        elif e.type == "agent_pause":
            self.echo.paused(t_ms, e.turn)
        elif e.type == "interrupted":
            self.echo.interrupted(t_ms, e.turn)

    def mic(self, start: int, stop: int) -> np.ndarray | None:
        """What the room adds to the microphone over samples [start, stop), or None."""
        return None if self.echo is None else self.echo.read(start, stop)

    def frames(self, until_ms: float, user: Sequence[UserSpeech]) -> list[VideoFrame]:
        """The camera's frames that reached the agent by ``until_ms`` and were not yet sent, in
        order, each with the media time it was taken at (``CameraPath``: late, jittered, dropped)."""
        if not self.video:
            return []
        step = 1000.0 / self.settings.fps
        while self._frame * step <= until_ms:  # taken by now (what the lips do is known by now)
            t = self._frame * step
            arrival = self.camera.arrival(t)
            if arrival is not None:
                self._on_the_way.append((arrival, VideoFrame(self._picture(t, user), t)))
            self._frame += 1
        out = []
        while self._on_the_way and self._on_the_way[0][0] <= until_ms:
            out.append(self._on_the_way.popleft()[1])
        return out

    def _picture(self, t: float, user: Sequence[UserSpeech]) -> np.ndarray:
        """The face at ``t``: the still loop by time, or, while the voice sounds, the talking loop
        from a phase drawn for that stretch of voice (seeded by ``video_seed`` and where the
        stretch began): each stretch starts anywhere in the syllables, as a real mouth's would,
        so no script's timing lines up with one part of the loop."""
        since = voice_since(t, user) if self.settings.video == "face" else None
        if since is None:
            return self.loops.still[self._frame % len(self.loops.still)]
        talk = self.loops.talk
        phase = int(np.random.default_rng((self.settings.video_seed, int(round(since)))).integers(len(talk)))
        return talk[(phase + int(round((t - since) * self.settings.fps / 1000.0))) % len(talk)]

    def background_voice(self, user_voice: str) -> str:
        """A flite voice other than the user's."""
        return next(v for v in ("rms", "awb", "kal16") if v != user_voice)
