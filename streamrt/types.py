"""Typed items that flow through streamrt: media in, units and events out.

Times are milliseconds of *media* (position in the source stream) unless a name says otherwise.
``elapsed_ms`` follows SimulEval: media consumed when the unit was emitted plus the wall-clock
compute spent on the stream so far, so latency with and without computation comes from one log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

import numpy as np

from streamrt.errors import InputError


@dataclass(frozen=True, eq=False)
class AudioChunk:
    """Mono float32 samples in [-1, 1] at ``sample_rate``, starting at ``start_ms`` of media."""

    samples: np.ndarray
    sample_rate: int
    start_ms: float

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.samples) / self.sample_rate

    @property
    def end_ms(self) -> float:
        return self.start_ms + self.duration_ms


@dataclass(frozen=True)
class StepPending:
    """Step the audio received so far now, even short of a full step, and go on taking audio (the
    dialogue's end of turn waits on the ASR's last words; ``input_finished`` would end the stream).
    Streams that declare it in ``input_kinds`` take it (Whisper streaming)."""


@dataclass(frozen=True)
class Finalize:
    """Commit the words of the audio received so far now, as the end of input would, and go on
    taking audio. The stream steps what it holds at once (short of a full step, at first-token
    priority), that step is its last over this audio (the encoder's look-ahead and the features'
    tail flushed, the whole hypothesis written as final), and the audio after it starts a new
    segment: a fresh window with the committed text as its context. A dialogue's end of a speech
    run: the turn's last words are committed when the user stops, not one step of audio later.
    Streams that declare it in ``input_kinds`` take it (Whisper streaming); with nothing received
    since the last segment began it does nothing.

    ``context``: the next segment is decoded after the text committed so far (Whisper's prompt),
    as the window after a trim is; False: it starts as a new stream would. Whisper copies the
    style of its prompt: after speech runs that ended without punctuation, or a backchannel heard
    as "MMA gen", it wrote the end of the next turn without its period."""

    context: bool = True


@dataclass(frozen=True, eq=False)
class VideoFrame:
    """One video frame (H x W x C uint8) shown at ``time_ms`` of media."""

    pixels: np.ndarray
    time_ms: float


@dataclass(frozen=True)
class LipActivity:
    """Lip activity at one video frame (``streamrt.tasks.lips``), at ``time_ms`` of media.

    score: 0 (still lips) .. 1 (lips moving as in speech), None when unknown; active: the score
    is at or past the model's threshold, None when unknown. Unknown means no face in this frame,
    or too few frames with a face in the model's window: it is not "still"."""

    time_ms: float
    score: float | None
    active: bool | None
    opening: float | None = None  # this frame's mouth opening (inner-lip gap / mouth width)

    @property
    def state(self) -> Literal["active", "still", "unknown"]:
        return "unknown" if self.active is None else ("active" if self.active else "still")

    def to_json(self) -> dict:
        return {"time_ms": round(self.time_ms, 1), "state": self.state,
                "score": None if self.score is None else round(self.score, 3),
                "opening": None if self.opening is None else round(self.opening, 4)}


@dataclass(frozen=True)
class TextDelta:
    """Text for a text-input stream (an LLM conversation): the stream's current text becomes
    ``text[:replace_from] + self.text``. ``replace_from`` None appends at the end; a position
    rewrites the suffix from that character on (an ASR partial revised, a turn cut back to what was
    heard), so ``TextDelta("", 0)`` clears it. ``end_of_turn``: the text up to here is a complete
    turn and the model may answer it. Positions count characters of the stream's input text.
    ``score_end``: report the probability that the turn ends after the text so far
    (``StepResult.end_of_turn_p``; a turn-taking policy's score); a model that cannot ignores it."""

    text: str
    replace_from: int | None = None
    end_of_turn: bool = False
    score_end: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise InputError(f"TextDelta.text must be a str, got {type(self.text).__name__}", code="bad_text")
        if self.replace_from is not None and (not isinstance(self.replace_from, int) or self.replace_from < 0):
            raise InputError(f"TextDelta.replace_from must be an int >= 0 (characters) or None, got "
                             f"{self.replace_from!r}", code="bad_text")

    def apply(self, current: str, answered_to: int = 0) -> str:
        """The text after this delta; InputError (``bad_text``) when ``replace_from`` is past the
        current end, or before ``answered_to`` (where the turn not yet answered starts: text the
        model has answered is never rewritten). The input text is left as it was on error."""
        if self.replace_from is None:
            return current + self.text
        if self.replace_from < answered_to:
            raise InputError(f"replace_from {self.replace_from} is inside a turn already answered "
                             f"(it ends at character {answered_to})", code="bad_text")
        if self.replace_from > len(current):
            raise InputError(
                f"TextDelta.replace_from is {self.replace_from}, past the end of the {len(current)} "
                "characters received so far", code="bad_text")
        return current[: self.replace_from] + self.text


@dataclass(frozen=True)
class ReplyHeard:
    """The listener heard only ``text`` of a text model's latest reply (a barge-in cut the speech):
    a reply still running stops, and the conversation keeps that prefix as the model's turn, so
    the model never refers to what was not said."""

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise InputError(f"ReplyHeard.text must be a str, got {type(self.text).__name__}", code="bad_text")


@dataclass(frozen=True)
class WithdrawReply:
    """A text model's latest reply was never delivered (it was generated ahead of a decision that
    did not come: preemptive generation): a reply still running stops, its output not yet handed
    out is dropped, and the turn it answered is open again (as if its end had not come), so the
    next ``TextDelta`` edits it and a later ``end_of_turn`` answers it afresh. Nothing to withdraw
    (no reply, or input came after it) is a no-op."""


@dataclass(frozen=True)
class Unit:
    """One emitted output unit (a word, or a character/token for languages without spaces).

    start_ms/end_ms: where the unit lies in the source audio (from alignment; may be estimates).
    media_delay_ms: source consumed when the unit was emitted (SimulEval ``delays``).
    elapsed_ms: media_delay_ms plus compute time spent so far (SimulEval ``elapsed``).
    """

    text: str
    start_ms: float
    end_ms: float
    media_delay_ms: float
    elapsed_ms: float

    def to_json(self) -> dict:
        return {
            "text": self.text,
            "start_ms": round(self.start_ms, 1),
            "end_ms": round(self.end_ms, 1),
            "media_delay_ms": round(self.media_delay_ms, 1),
            "elapsed_ms": round(self.elapsed_ms, 1),
        }


@dataclass(frozen=True)
class PartialEvent:
    """The current uncommitted hypothesis (replaces the previous partial)."""

    text: str
    media_ms: float
    type: Literal["partial"] = "partial"


@dataclass(frozen=True)
class CommitEvent:
    """Units newly committed; never retracted."""

    units: tuple[Unit, ...]
    type: Literal["commit"] = "commit"

    @property
    def text(self) -> str:
        return " ".join(u.text for u in self.units)


@dataclass(frozen=True)
class ErrorEvent:
    code: str
    message: str
    fatal: bool = False
    type: Literal["error"] = "error"


@dataclass(frozen=True)
class EndEvent:
    """Sent once after end of stream, when everything is committed."""

    units: tuple[Unit, ...]
    source_ms: float
    summary: dict = field(default_factory=dict)
    type: Literal["end"] = "end"


Event = Union[PartialEvent, CommitEvent, ErrorEvent, EndEvent]


# The keys a model's ``describe()`` uses for the precision it runs in
# (``streamrt.quant.precision.Precision.describe``); /healthz repeats them. Here, not in the quant
# module, so that transports can name them without importing torch.
PRECISION_KEYS = ("precision", "precision_requested", "precision_reason", "cpu_capability", "bf16_probe_speedup")
