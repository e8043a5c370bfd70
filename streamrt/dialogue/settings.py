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
    echo_threshold / echo_min_speech_ms / echo_level_ratio: the echo guard. While the agent's voice
        plays, a frame counts as user speech only with this higher VAD probability, in a run this
        long, and at an input level (RMS) of at least ``echo_level_ratio`` times the level of the
        agent audio playing then (its loudest 32 ms over the last 160 ms of the modelled playback
        position). What leaks back from the speaker reaches the microphone well below the level it
        was played at (browsers also cancel it with ``echoCancellation``), the user's own voice
        does not. At 0.25 (-12 dB) a user four times quieter than the agent's output must speak up
        to barge in (at 0.7, flite's quiet kal16 voice could not interrupt hibari in dialogue eval).
        The run is 96 ms (three silero frames; it was 160): the agent pauses that much sooner, and
        echo under the level ratio still never starts one; echo above it (-10 dB) starts more
        (scripts/bench_echo_guard.py; docs/benchmarks.md, "Barge-in reaction"). Each resume of a
        turn (a pause that was no barge-in) doubles the run that turn needs (up to 16 times): echo
        loud enough to pass the level check otherwise pauses the agent on its own voice every
        second, over and over (pause, resume, the echo of the resumed words, pause). ASR words
        that arrive while the agent plays and the guard hears no user speech are dropped as echo.
        None: that part of the guard is off.
    lips_window_ms: with a camera (``DialogueSession.receive_video``): a frame is not the user's
        speech when the user's lips were seen ``still`` over the last this many ms of media (a
        face in every frame, none moving: the agent's own voice, a TV, another person), so it
        neither pauses nor interrupts the agent, nor starts a user turn while the agent is silent.
        Moving lips, no face, no camera or frames missing: the audio-only guard alone, as without
        video. None: lips are not used.
        The turn policy sees the same state (``TurnView.lips``; "unknown" without a camera).
    lips_onset_ms: with a camera, speech frames over lips seen still just before the lips are
        seen moving still count towards the user's speech run, up to this many ms of them: a lip
        score sees a movement only some frames after it starts (67-133 ms at 15 fps on the
        animated photo), so without it the lips would add that much to barge-in reaction. None
        or 0: no such credit.
    lips_hold_turn_ms: with a camera, no turn ends while the audio hears speech over lips seen still,
        for up to this many ms of such speech (no gap of ``hangover_ms`` in it): the user going on
        after a pause is heard before the lips' score sees them move (``lips_onset_ms``), and the
        turn policy's wait must not run out in between; longer, it is another voice (a TV) and the
        policy decides as without it. None or 0: no such hold.
    lips_hold_turn_frames: with a camera, the hold lasts at least this many of the camera's frame
        intervals (frames; ``LipTimeline.frame_interval_ms``): the lips' score needs frames to see
        a mouth move, so its lag is counted in frames; at 5 fps a resumed voice was held back for
        over 600 ms and the turn taken over. 5 frames: 1000 ms at 5 fps, under
        ``lips_hold_turn_ms`` from 8.3 fps up. None or 0: the hold is ``lips_hold_turn_ms`` alone.
    lips_max_wait_ms: with a camera, a VAD frame is judged once the lip scores of its time are in
        (the camera's next frame is not due before the frame's end), or after this many ms of the
        session's clock, whichever comes first; past it the frame is judged on what the lips show
        so far (late or missing frames read as unknown: the audio-only guard). Frames late on the
        network (or a lip model behind) still count if they come within it; it is also the most
        a late camera adds to a decision. A camera whose scores stopped coming for this long, or
        whose frames come further behind the audio than this, is not waited for. None or 0:
        never wait.
    resume_after_ms: user speech while the agent plays pauses its audio at once (``agent_pause``:
        the client stops playing and drops what it holds); if the turn policy does not call it a
        barge-in, the agent resumes after this much silence (the speech was a backchannel:
        "mm-hm", "right"), from the first word the user had not heard whole (``agent_resume``).
        None: the agent never pauses, only stops when the policy yields.
    asr_preroll_ms / asr_silence_tail_ms: the ASR gets the user's audio only around speech: from
        ``asr_preroll_ms`` before the VAD heard it start to the end of the run (``hangover_ms``
        after it), where the ASR is asked to finalise the run's words (``Finalize``); an ASR that
        cannot is sent up to ``asr_silence_tail_ms`` after the speech (to finish the last words
        with). Longer silence, echo the guard rejected and noise are not sent. Whisper drifts on
        long silence (the agent talks for most of a dialogue while the microphone sends silence)
        and it costs compute. None: the ASR gets all audio.
    preempt_after_ms: preemptive generation: once the user has been silent this long (ms of media
        since the VAD's last speech frame; the VAD's hangover comes first), the ASR has read the
        whole speech run and (for a policy that wants it) the LLM has scored the transcript, the
        answer is generated on that transcript ahead of the turn policy's decision, and held: the
        LLM replies and the TTS speaks, nothing reaches the client. When the policy says Speak on
        the same transcript it is released at once (its text, then its audio paced as any turn's);
        when the user speaks again or the transcript changes first, the reply is withdrawn from
        the LLM (no trace in its history) and its speech cancelled, and nothing of it was sent.
        It costs the compute of the answers dropped (one per mid-turn pause). None: off (the
        answer starts at the decision).
    max_input_s: user audio one session may send (seconds; the session is closed past it).
    max_buffered_audio_s: user audio received but not yet read by the ASR (seconds).
    """

    audio_lead_ms: float | None = 200.0
    vad_threshold: float = 0.5
    min_speech_ms: float = 64.0
    hangover_ms: float = 160.0
    echo_threshold: float | None = 0.85
    echo_min_speech_ms: float | None = 96.0
    echo_level_ratio: float | None = 0.25
    lips_window_ms: float | None = 400.0
    lips_onset_ms: float | None = 150.0
    lips_hold_turn_ms: float | None = 600.0
    lips_hold_turn_frames: float | None = 5.0
    lips_max_wait_ms: float | None = 100.0
    resume_after_ms: float | None = 400.0
    asr_preroll_ms: float = 320.0
    asr_silence_tail_ms: float | None = 1000.0
    preempt_after_ms: float | None = 0.0
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
