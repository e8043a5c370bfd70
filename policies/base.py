"""What a read/write policy sees and what it answers (SimulEval's ReadAction / WriteAction shape).

The decoder builds a ``PolicyView`` after each model step: the source consumed so far, what is
already committed, and the current hypothesis that continues after the committed prefix, with
per-token alignment (and alignment-head cross-attention, when the decoder provides it). The policy
answers ``Read()`` (commit nothing, wait for more source) or ``Write(count, final)`` (commit the first
``count`` hypothesis tokens). Policies never touch the model; they may keep state between calls and
are reset for every new stream.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Union

import numpy as np

from streamrt.errors import PolicyOptionError


@dataclass(frozen=True)
class Read:
    """Commit nothing now; read more source."""


@dataclass(frozen=True)
class Write:
    """Commit the first ``count`` tokens of the current hypothesis. ``final``: the stream is done."""

    count: int
    final: bool = False


Action = Union[Read, Write]


@dataclass(frozen=True)
class HistorySelection:
    """What a task keeps of the past (StreamAtt-style history selection for unbounded audio).

    text_words: how many of the last committed words stay in the decoder's context (prompt).
    audio_from_ms: source before this media time can be dropped from the encoder window.
    """

    text_words: int
    audio_from_ms: float


@dataclass(frozen=True, eq=False)
class HypToken:
    """One hypothesis token after the committed prefix.

    text: its text as decoded (with a leading space where it starts a word, Whisper style).
    start_ms/end_ms: media position from the alignment (estimates; may be equal).
    attention: alignment-head cross-attention of this token over the encoder frames of the current
        window, averaged over heads, shape (n_frames,), sums to ~1; None when not available.
    logprob: log-probability the decoder gave this token.
    """

    id: int
    text: str
    start_ms: float
    end_ms: float
    attention: np.ndarray | None = None
    logprob: float = 0.0


@dataclass(frozen=True, eq=False)
class PolicyView:
    """Read-only view handed to ``Policy.decide``.

    source_ms: source consumed so far (media ms). source_finished: no more source will come.
    window_start_ms: media time of encoder frame 0 of the current window; frame_ms: one encoder
        frame's duration; n_frames: frames in the window (so frame i covers
        [window_start_ms + i*frame_ms, + frame_ms)).
    committed: texts of all units committed so far in this stream.
    hypothesis: tokens continuing after the committed prefix.
    committed_start_ms: where each committed unit starts in the source (from the alignment), when
        the task provides it (empty otherwise); history-selection policies use it.
    """

    source_ms: float
    source_finished: bool
    window_start_ms: float
    frame_ms: float
    n_frames: int
    committed: tuple[str, ...]
    hypothesis: tuple[HypToken, ...]
    committed_start_ms: tuple[float, ...] = ()

    def frame_of_ms(self, ms: float) -> int:
        return int((ms - self.window_start_ms) // self.frame_ms)

    def word_spans(self) -> list[tuple[int, int]]:
        """The hypothesis grouped into words, as [i0, i1) token spans (see ``word_spans``)."""
        return word_spans([t.text for t in self.hypothesis])


def word_spans(texts: "list[str] | tuple[str, ...]") -> list[tuple[int, int]]:
    """Group BPE token texts into words: [i0, i1) spans. A token whose text starts with a space
    starts a new word; others (word pieces, punctuation) join the previous word. The task commits
    whole words only, so a policy's ``Write(count)`` is cut back to a span end."""
    spans: list[tuple[int, int]] = []
    for i, t in enumerate(texts):
        if not spans or t[:1].isspace():
            spans.append((i, i + 1))
        else:
            spans[-1] = (spans[-1][0], i + 1)
    return spans


class Policy(ABC):
    """Base class. Subclasses declare ``name`` and ``options`` ({option: (type, default, help)})."""

    name: ClassVar[str]
    options: ClassVar[Mapping[str, tuple[type, Any, str]]] = {}

    def __init__(self, **values: Any):
        unknown = set(values) - set(self.options)
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise PolicyOptionError(
                f"policy {self.name!r} has no option {', '.join(sorted(unknown))}; its options: {known}"
            )
        for key, (kind, default, _help) in self.options.items():
            setattr(self, key, _coerce(self.name, key, kind, values.get(key, default)))
        self.validate()
        self.reset()

    def validate(self) -> None:
        """Check option ranges; raise PolicyOptionError naming the option and the allowed range."""

    def reset(self) -> None:
        """Forget everything about the previous stream."""

    @abstractmethod
    def decide(self, view: PolicyView) -> Action:
        """Return Read() or Write(count, final) for this view."""

    def decodes_to_commit(self) -> int:
        """How many consecutive decodes must show a word before ``decide`` writes it: 1 (the
        default) for a policy that decides on one hypothesis (AlignAtt, EDAtt, StreamAtt, wait-k);
        LocalAgreement-n needs n. The task sizes its stall limit by it: after a decode, such a
        policy still holds back the audio of the last n - 1 decode intervals, so a longer interval
        (the degradation ladder's policy stride) is a longer wait for it, and no wait for a policy
        that writes what one decode heard."""
        return 1

    def stop_rule(self, n_frames: int) -> Callable[[Any], bool] | None:
        """A test on one generated token's alignment attention (a row over the decoder's frames, the
        window being the first ``n_frames``) that is True where ``decide`` stops writing whatever
        follows. The decoder may then stop generating after that token, so a step decodes what can
        be committed and one token more. None (the default): the policy needs the whole hypothesis
        (LocalAgreement compares whole hypotheses)."""
        return None

    def select_history(self, view: PolicyView) -> HistorySelection | None:
        """What past text and audio to keep; None lets the task apply its default buffer trimming."""
        return None

    def settings(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.options}


def _coerce(policy: str, key: str, kind: type, value: Any) -> Any:
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    try:
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return value.lower() in ("1", "true", "yes", "on")
            raise ValueError(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        raise PolicyOptionError(
            f"policy {policy!r} option {key!r} must be {kind.__name__}, got {value!r}"
        ) from None
