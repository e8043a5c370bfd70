"""What a dialogue session emits, in order. The transport turns each into a message of the
dialogue protocol (docs/protocol.md, ``/v1/dialogue``): the event's ``type`` is the message's
``type``; ``AgentAudioEvent`` goes out as a binary frame.

Two clocks appear here and both are media clocks, never wall time read by the core:
- ``media_ms`` is the user's input media clock: milliseconds of user audio received when the event
  was produced (a microphone sends silence too, so it runs in real time).
- an agent turn's audio has its own position, ``offset_ms`` from the turn's first sample.

The session paces agent audio itself (by its injected clock): it releases an ``AgentAudioEvent``
only while the turn's audio released so far is at most ``audio_lead_ms`` ahead of the turn's
playback, so a client never holds seconds of stale audio and the session knows what was heard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

import numpy as np

from streamrt.types import ErrorEvent, LipActivity


@dataclass(frozen=True)
class UserPartialEvent:
    """The user's current uncommitted words (replace the previous partial)."""

    text: str
    media_ms: float
    type: Literal["user_partial"] = "user_partial"


@dataclass(frozen=True)
class UserCommitEvent:
    """User words newly committed by the ASR (never retracted)."""

    text: str
    media_ms: float
    type: Literal["user_commit"] = "user_commit"


@dataclass(frozen=True)
class UserTurnEndEvent:
    """The turn policy decided the user's turn is over: the agent answers ``text`` (the whole
    user turn as committed). Sent once per answered user turn, when the decision is taken, so a
    client (and ``streamrt dialogue eval``) can split response onset into ASR finalisation,
    end-of-turn decision, LLM time to first token and TTS first chunk. ``speech_end_ms``: where the
    VAD heard the user's speech end (media ms; the server's response-onset metric starts there).
    ``end_of_turn_p``: the LLM's end-of-turn probability of ``text`` that the policy decided on
    (None: the policy asks for none, or it had not come); ``silence_ms``: the silence after the
    user's speech that the policy had seen when it decided (the wait it applied)."""

    text: str
    media_ms: float
    speech_end_ms: float | None = None
    end_of_turn_p: float | None = None
    silence_ms: float | None = None
    type: Literal["user_turn_end"] = "user_turn_end"


@dataclass(frozen=True)
class UserTurnScoreEvent:
    """The LLM's end-of-turn probability ``end_of_turn_p`` of the user's open turn ``text`` (as the
    LLM read it) came in, for a turn policy that asks for it (``semantic``), ``silence_ms`` into
    the user's silence (0: while the user speaks). Diagnostics: with ``user_turn_end`` it shows
    whether a turn waited for a low score, a late one, or one of words that then changed."""

    text: str
    end_of_turn_p: float
    silence_ms: float
    media_ms: float
    type: Literal["user_turn_score"] = "user_turn_score"


@dataclass(frozen=True)
class AgentTurnStartEvent:
    """Sent just before the turn's first audio frame. ``turn`` counts agent turns from 1."""

    turn: int
    media_ms: float
    type: Literal["agent_turn_start"] = "agent_turn_start"


@dataclass(frozen=True)
class AgentTextEvent:
    """Text of the agent's answer, as the LLM produces it (appended to the turn's text so far)."""

    turn: int
    text: str
    media_ms: float
    type: Literal["agent_text"] = "agent_text"


@dataclass(frozen=True, eq=False)
class AgentAudioEvent:
    """Agent speech: mono float32 samples at ``sample_rate``, starting ``offset_ms`` into the turn."""

    turn: int
    samples: np.ndarray
    sample_rate: int
    offset_ms: float
    type: Literal["agent_audio"] = "agent_audio"


@dataclass(frozen=True)
class AgentTurnEndEvent:
    """The turn's audio has all been released; ``text`` is everything it said."""

    turn: int
    text: str
    media_ms: float
    type: Literal["agent_turn_end"] = "agent_turn_end"


@dataclass(frozen=True)
class AgentPauseEvent:
    """The user may be barging in: stop playing ``turn`` now and drop its buffered audio. The
    session holds the turn at ``position_ms`` (the playback position it models; the client heard up
    to about there). ``interrupted`` follows if it is a barge-in, ``agent_resume`` if it was not
    (a backchannel, a cough)."""

    turn: int
    position_ms: float
    media_ms: float
    type: Literal["agent_pause"] = "agent_pause"


@dataclass(frozen=True)
class AgentResumeEvent:
    """The pause of ``turn`` was not a barge-in: its audio comes again from ``position_ms`` (the
    start of the first word the user had not heard whole, at or before the pause's position), in
    ``agent_audio`` frames whose ``offset_ms`` starts there."""

    turn: int
    position_ms: float
    media_ms: float
    type: Literal["agent_resume"] = "agent_resume"


@dataclass(frozen=True)
class InterruptedEvent:
    """The user barged in: drop any buffered agent audio of ``turn`` now. ``heard_text`` is what
    the user heard of it (by playback position); only that stays in the agent's context.
    ``speech_start_ms``: where the VAD heard the interrupting speech start (media ms).
    ``user_continues``: the agent had taken over a pause and the user went on with the turn: the
    turn is withdrawn (nothing of it, ``heard_text`` included, stays in the agent's context) and
    the user's turn is open again: the next ``UserTurnEndEvent`` carries the whole turn, the words
    of the one it answered included (it supersedes that one)."""

    turn: int
    heard_text: str
    media_ms: float
    speech_start_ms: float | None = None
    user_continues: bool = False
    type: Literal["interrupted"] = "interrupted"


@dataclass(frozen=True)
class UserLipsEvent:
    """The user's camera frames just scored (with a camera: ``DialogueSession.receive_video``), each
    a ``LipActivity`` on the audio's media clock; sent as the ``lips`` message."""

    frames: tuple[LipActivity, ...]
    media_ms: float
    type: Literal["lips"] = "lips"


@dataclass(frozen=True)
class DialogueEndEvent:
    """Sent once, last, after ``stop``: the session is over."""

    media_ms: float
    summary: dict = field(default_factory=dict)
    type: Literal["end"] = "end"


DialogueEvent = Union[
    UserPartialEvent,
    UserCommitEvent,
    UserTurnEndEvent,
    UserTurnScoreEvent,
    AgentTurnStartEvent,
    AgentTextEvent,
    AgentAudioEvent,
    AgentTurnEndEvent,
    AgentPauseEvent,
    AgentResumeEvent,
    InterruptedEvent,
    UserLipsEvent,
    ErrorEvent,
    DialogueEndEvent,
]
