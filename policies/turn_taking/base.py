"""What a turn-taking policy sees and what it answers.

The dialogue session builds a ``TurnView`` after every VAD frame (32 ms of user audio) and asks the
policy. While the agent is silent, ``Speak()`` ends the user's turn and starts the answer; while
the agent speaks, ``Yield()`` is a barge-in (the agent stops, keeping only what was heard) and
``Listen()`` lets it go on (a backchannel such as "mm-hm" while it speaks). Times are milliseconds
of the user's media (``media_ms``), so a policy is deterministic in virtual time. Policies never
touch a model; they may keep state and are created once per session.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Union

from streamrt.errors import PolicyOptionError


@dataclass(frozen=True)
class Listen:
    """Nothing to do: keep listening (the agent, if speaking, goes on)."""


@dataclass(frozen=True)
class Speak:
    """The user's turn is over: answer it now."""


@dataclass(frozen=True)
class Yield:
    """The user barges in: the agent stops speaking now. ``user_continues``: the user is going on
    with the turn the agent just answered (the agent took over a pause the user had not finished):
    the agent's false start is withdrawn (nothing of it stays in its context) and the user's turn
    is open again, so the next answer is to the whole turn (a turn whose audio has all gone out,
    heard whole, or one that answers no user turn is not withdrawn: the session goes on as on
    ``Listen()``). Otherwise the agent keeps what the user heard and the user's words start a new
    turn."""

    user_continues: bool = False


TurnAction = Union[Listen, Speak, Yield]


@dataclass(frozen=True)
class TurnView:
    """The state of the dialogue at one VAD frame.

    media_ms: user audio received so far. user_speaking: the VAD (behind the echo guard) hears the
    user now. speech_ms: length of the user's current speech run (of the last one while silent).
    silence_ms: since the user's last speech frame (0 while speaking; since the start of the
    session when the user never spoke). transcript: the words of the user's turn not yet answered
    (ASR commits and partial), "" if none. agent_speaking: the agent's voice is playing (or
    paused for the user's speech). end_of_turn_p: the LLM's probability that ``transcript`` is a
    whole turn (its end-of-turn token, or with ``score_sentence_end`` a sentence-final mark, next),
    None until scored (policies that set ``wants_end_of_turn_p`` get it asked for whenever the
    transcript changes). lips: with a camera and the user silent for at least
    ``DialogueSettings.lips_window_ms``, the user's lips since the voice stopped: "active" (the
    mouth moved after the voice stopped: the user is still talking, too softly for the VAD, or
    about to go on), "still" (a face seen, lips not moving), or "unknown" (no camera, no face,
    frames missing, the user speaking or silent for less than that: no evidence; always so
    without video, so a policy that reads it behaves exactly as before when there is no camera).
    agent_audible_ms: how long the agent's current turn has been audible: ms of media since its
    first audio went out to the client (pauses included), None while the agent is silent or its
    turn's audio has not started yet. answered_after_ms: the agent's current turn answers the
    user's: how long the user had been silent when it was decided (ms of media: the pause it took
    over), None when there is no agent turn or it answers no user turn (a greeting)."""

    media_ms: float
    user_speaking: bool
    speech_ms: float
    silence_ms: float
    transcript: str
    agent_speaking: bool
    end_of_turn_p: float | None = None
    lips: str = "unknown"
    agent_audible_ms: float | None = None
    answered_after_ms: float | None = None

    @property
    def words(self) -> int:
        return len(self.transcript.split())

    @property
    def onset_into_agent_ms(self) -> float | None:
        """While the user speaks over an agent turn: how far into the agent's voice the user's
        speech run began (ms of media; 0 or less: before the voice was heard); None otherwise."""
        if not (self.user_speaking and self.agent_speaking):
            return None
        return (self.agent_audible_ms or 0.0) - self.speech_ms


class TurnPolicy(ABC):
    """Subclasses set ``name``, take their options as keyword arguments (checked with
    ``check_option``), and may set ``wants_end_of_turn_p``."""

    name: ClassVar[str] = "?"
    wants_end_of_turn_p: ClassVar[bool] = False

    @abstractmethod
    def decide(self, view: TurnView) -> TurnAction:
        """The action for this frame."""

    def describe(self) -> dict[str, Any]:
        """The policy's name and options (the ``ready`` message and logs repeat them)."""
        return {"name": self.name, **self.options()}

    def options(self) -> Mapping[str, Any]:
        return {}

    def check_option(self, option: str, value: float | None, *, minimum: float = 0.0, maximum: float | None = None,
                     unit: str = "ms") -> None:
        if value is None:
            return
        if not isinstance(value, (int, float)) or value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
            raise PolicyOptionError(f"turn policy {self.name!r}: {option} must be {bound} {unit}, got {value!r}")


def barge_in(view: TurnView, min_interrupt_ms: float | None, interrupt_words: int | None,
             continue_window_ms: float | None = None, continue_min_speech_ms: float | None = None) -> Yield | None:
    """The rule both built-in policies use while the agent speaks (None: no barge-in, the agent
    goes on). User speech that began within ``continue_window_ms`` of the agent's voice starting,
    on a turn that answers the user, is the user going on with the turn the agent took over (a
    mid-turn pause): once it has lasted ``continue_min_speech_ms`` it yields, the turn continuing
    (``Yield(user_continues=True)``); shorter speech that stops (the agent's echo, which ends when
    the session pauses the agent's audio at the speech's onset) is heard out. Later speech yields
    once it has lasted ``min_interrupt_ms`` or its words reached ``interrupt_words`` (a backchannel
    such as "mm-hm" or "right, okay" is short and one or two words). None disables a criterion."""
    if not view.user_speaking:
        return None
    onset = view.onset_into_agent_ms
    if (continue_window_ms is not None and view.answered_after_ms is not None and onset is not None
            and onset <= continue_window_ms):
        if continue_min_speech_ms is None or view.speech_ms >= continue_min_speech_ms:
            return Yield(user_continues=True)
        return None
    if min_interrupt_ms is not None and view.speech_ms >= min_interrupt_ms:
        return Yield()
    if interrupt_words is not None and view.words >= interrupt_words:
        return Yield()
    return None
