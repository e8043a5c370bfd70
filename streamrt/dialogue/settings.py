"""The dialogue session's settings: every limit named with its unit; ``None`` disables one."""

from __future__ import annotations

from dataclasses import dataclass, fields

from streamrt.errors import ConfigError


@dataclass(frozen=True)
class DialogueSettings:
    """audio_lead_ms: agent audio released ahead of its playback position (the most a client ever
        holds, so an interruption never leaves seconds of stale speech; None: release it all as it
        is made, for offline use).
    vad_threshold: speech probability (0-1) from which a VAD frame counts as speech.
    min_speech_ms: speech frames in a row before the user counts as speaking.
    hangover_ms: non-speech frames in a row before the user counts as silent again (gaps inside
        words and between close words are shorter).
    echo_threshold / echo_min_speech_ms: the echo guard. While the agent's voice plays, user speech
        needs this higher probability and this longer run: what leaks back from the speaker is
        quieter and more smeared than the user's own voice right at the microphone (browsers
        also cancel echo with ``echoCancellation``), so it rarely passes both. ASR words that
        arrive while the agent plays and the guarded VAD hears no user speech are dropped as echo.
        None: the same as without the agent.
    resume_after_ms: user speech while the agent plays pauses its audio at once (the client plays
        out at most ``audio_lead_ms``); if the turn policy does not call it a barge-in, the agent
        resumes after this much silence (the speech was a backchannel: "mm-hm", "right"). None:
        the agent never pauses, only stops when the policy yields.
    max_input_s: user audio one session may send (seconds; the session is closed past it).
    max_buffered_audio_s: user audio received but not yet read by the ASR (seconds).
    """

    audio_lead_ms: float | None = 200.0
    vad_threshold: float = 0.5
    min_speech_ms: float = 64.0
    hangover_ms: float = 160.0
    echo_threshold: float | None = 0.85
    echo_min_speech_ms: float | None = 160.0
    resume_after_ms: float | None = 400.0
    max_input_s: float | None = 4 * 3600.0
    max_buffered_audio_s: float | None = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"DialogueSettings.{f.name} must be a number >= 0 or None, got {v!r}")
        for name in ("vad_threshold", "echo_threshold"):
            v = getattr(self, name)
            if v is not None and not 0 < v < 1:
                raise ConfigError(f"DialogueSettings.{name} must be a probability in (0, 1), got {v!r}")
