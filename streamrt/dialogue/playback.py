"""One agent turn's speech on its way out: the audio the TTS made, the units that map output time
to text, what was released to the client and what it has played, and what of the text that was.

Playback is modelled, not read: the client plays in real time from the first audio released (the
session's clock) and stalls when it runs out; a client that reports its position
(``receive_playback``) corrects the model. The session releases audio only ``audio_lead_ms`` ahead
of the position, so the position is known to within that lead.
"""

from __future__ import annotations

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
    audio: list[np.ndarray] = field(default_factory=list)
    made: int = 0  # samples the TTS made
    released: int = 0  # samples released to the client
    played_ms: float = 0.0
    _played_at: float | None = None  # clock time played_ms was last brought up to date
    reply_done: bool = False  # the LLM's reply is over (all text went to the TTS)
    speech_done: bool = False  # the TTS spoke it all
    started: bool = False  # AgentTurnStartEvent was sent
    ended: bool = False  # AgentTurnEndEvent was sent
    paused: bool = False  # the user speaks: release nothing until resumed or stopped
    reply_tokens: int = 0  # reply tokens the LLM produced so far
    from_llm: bool = True  # the LLM's answer (False: a greeting, said without the LLM)
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
        """The client says it has played ``position_ms`` of the turn."""
        self.played_ms = min(self.released_ms, max(0.0, position_ms))
        self._played_at = now

    def take(self, lead_ms: float | None) -> tuple[float, np.ndarray] | None:
        """(offset_ms, samples) to release now so that at most ``lead_ms`` is ahead of playback; None
        when nothing is due."""
        if self.paused or self.released >= self.made:
            return None
        until = self.made if lead_ms is None else min(
            self.made, int((self.played_ms + lead_ms) * self.sample_rate / 1000.0))
        if until <= self.released:
            return None
        whole = np.concatenate(self.audio) if len(self.audio) > 1 else self.audio[0]
        base = self.made - len(whole)  # samples before whole[0] (already dropped)
        out = whole[self.released - base: until - base]
        offset = self.released_ms
        self.audio = [whole[until - base:]] if until < self.made else []
        self.released = until
        return offset, out

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
                k = int(len(words) * (self.played_ms - u.start_ms) / max(u.end_ms - u.start_ms, 1e-9))
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
