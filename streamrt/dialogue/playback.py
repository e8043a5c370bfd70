"""One agent turn's speech on its way out: the audio the TTS made, the units that map output time
to text, what was released to the client and what it has played, and what of the text that was.

Playback is modelled, not read: the client plays in real time from the first audio released (the
session's clock) and stalls when it runs out; a client that reports its position
(``receive_playback``) corrects the model. The session releases audio only ``audio_lead_ms`` ahead
of the position, so the position is known to within that lead.

A pause (the user may be barging in) stops the modelled playback where it is: the client drops what
it holds, and the turn rewinds to the start of the first word not heard whole (``resume_ms``), so
what ``heard_text`` counts and what plays after a resume meet at a word boundary: no word skipped,
none but the cut one repeated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from streamrt.engine import UnitDraft

LEVEL_MS = 32.0  # blocks of the agent's audio whose level the echo guard compares with the input


@dataclass
class AgentTurn:
    """turn: counts agent turns from 1. text: everything the LLM said for it so far."""

    turn: int
    sample_rate: int
    text: str = ""
    units: list[UnitDraft] = field(default_factory=list)  # spoken chunks, positions in the output audio
    audio: list[np.ndarray] = field(default_factory=list)  # samples kept .. made
    kept: int = 0  # sample index of audio's first sample (what was played before it is dropped)
    made: int = 0  # samples the TTS made
    released: int = 0  # samples released to the client
    played_ms: float = 0.0
    _played_at: float | None = None  # clock time played_ms was last brought up to date
    reply_done: bool = False  # the LLM's reply is over (all text went to the TTS)
    speech_done: bool = False  # the TTS spoke it all
    started: bool = False  # AgentTurnStartEvent was sent
    ended: bool = False  # AgentTurnEndEvent was sent
    paused: bool = False  # the user speaks: release nothing until resumed or stopped
    pause_sent: bool = False  # the client was told to stop (AgentPauseEvent): a resume is told too
    resumes: int = 0  # pauses that were not a barge-in (a backchannel, or the agent's own echo)
    reply_tokens: int = 0  # reply tokens the LLM produced so far
    from_llm: bool = True  # the LLM's answer (False: a greeting, said without the LLM)
    voice_from_ms: float | None = None  # the user's media time (VAD frames, ms) when its first audio went out
    levels: list[float] = field(default_factory=list)  # RMS of each LEVEL_MS block of the audio made
    _level_tail: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    @property
    def released_ms(self) -> float:
        return 1000.0 * self.released / self.sample_rate

    @property
    def audible(self) -> bool:
        """Audio was released and the client has not played it all yet (or more may come)."""
        return self.started and (self.played_ms < self.released_ms - 1e-6 or not self.ended)

    def add_audio(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, np.float32)
        self.audio.append(x)
        self.made += len(x)
        block = int(self.sample_rate * LEVEL_MS / 1000)
        x = np.concatenate([self._level_tail, x])
        n = len(x) // block
        if n:
            self.levels += np.sqrt(np.mean(np.square(x[:n * block].reshape(n, block)), axis=1)).tolist()
        self._level_tail = x[n * block:]

    def playing_level(self, window_ms: float) -> float:
        """The loudest block level of the audio played over the last ``window_ms`` (RMS); 0 when
        nothing plays."""
        if not self.started or self.played_ms >= self.released_ms - 1e-6:
            return 0.0
        hi = int(self.played_ms // LEVEL_MS) + 1
        lo = max(0, int((self.played_ms - window_ms) // LEVEL_MS))
        return max(self.levels[lo:hi], default=0.0)

    def advance(self, now: float) -> None:
        """Real-time playback up to ``now``, never past what was released."""
        if self._played_at is not None:
            self.played_ms = min(self.released_ms, self.played_ms + 1000.0 * (now - self._played_at))
        self._played_at = now

    def report(self, position_ms: float, now: float) -> None:
        """The client says it has played ``position_ms`` of the turn (ignored while the client is
        told to hold it: a report sent before the pause reached the client is stale)."""
        if self.pause_sent:
            return
        self.played_ms = min(self.released_ms, max(0.0, position_ms))
        self._played_at = now

    def take(self, lead_ms: float | None) -> tuple[float, np.ndarray] | None:
        """(offset_ms, samples) to release now so that at most ``lead_ms`` is ahead of playback; None
        when nothing is due. Audio stays kept from where a pause would rewind to (``resume_ms``)."""
        if self.paused or self.released >= self.made:
            return None
        until = self.made if lead_ms is None else min(
            self.made, int((self.played_ms + lead_ms) * self.sample_rate / 1000.0))
        if until <= self.released:
            return None
        whole = np.concatenate(self.audio) if len(self.audio) > 1 else self.audio[0]
        out = whole[self.released - self.kept: until - self.kept]
        offset = self.released_ms
        keep = min(until, max(self.kept, self._sample(self.resume_ms())))
        self.audio = [whole[keep - self.kept:]] if keep < self.made else []
        self.kept, self.released = keep, until
        return offset, out

    def _sample(self, ms: float, up: bool = False) -> int:
        x = ms * self.sample_rate / 1000.0
        return math.ceil(x - 1e-6) if up else math.floor(x + 1e-6)

    def pause(self, now: float) -> float | None:
        """The user speaks over the turn: release nothing more, and if its audio is playing and not
        all released yet, stop the modelled playback now and rewind to ``resume_ms``. Returns the
        position playback stopped at (the client is to stop and drop what it holds: the session
        says so), or None when there is nothing to stop (no audio yet, or all of it released: the
        client plays out its last ``audio_lead_ms``)."""
        self.paused = True
        if not self.started or self.ended or self.pause_sent:
            return None
        self.advance(now)
        stopped = self.played_ms
        self.released = max(self.kept, min(self.released, self._sample(self.resume_ms(), up=True)))
        self.played_ms = self.released_ms
        self.pause_sent = True
        return stopped

    def resume(self) -> float | None:
        """Release audio again; returns the position it restarts from when the client had been told
        to stop (None: it never was)."""
        self.paused = False
        self.resumes += 1
        if not self.pause_sent:
            return None
        self.pause_sent = False
        return self.released_ms

    def resume_ms(self) -> float:
        """Where the first word not heard whole starts, by ``heard_text``'s mapping of the playback
        position through the units (the position itself between units or past them)."""
        for u in self.units:
            n = len(u.text.split())
            if not n or self.played_ms >= u.end_ms:
                continue
            if self.played_ms <= u.start_ms:
                break
            k = self._words_heard(u, n)
            return u.start_ms + k * (u.end_ms - u.start_ms) / n
        return self.played_ms

    def _words_heard(self, u: UnitDraft, n: int) -> int:
        """Of unit ``u`` (``n`` words) being played, the words heard whole: in proportion to time."""
        return min(n, int(n * (self.played_ms - u.start_ms) / max(u.end_ms - u.start_ms, 1e-9) + 1e-6))

    def heard_text(self) -> str:
        """The prefix of ``text`` the user heard: whole units played, and of the unit playing, its
        words in proportion to the time played; cut at a word boundary."""
        cursor, end, heard_any = 0, 0, False
        for u in self.units:
            words = u.text.split()
            if not words:
                continue
            if self.played_ms >= u.end_ms:
                k = len(words)
            elif self.played_ms > u.start_ms:
                k = self._words_heard(u, len(words))
            else:
                k = 0
            for w in words[:k]:
                at = self.text.find(w, cursor)
                if at < 0:
                    return self.text[:end] if heard_any else ""
                cursor = end = at + len(w)
                heard_any = True
            if k < len(words):
                break
        return self.text[:end].rstrip()
