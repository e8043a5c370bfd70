"""Turn-taking metrics of a spoken dialogue, from a timed event log (docs/metrics.md, "Dialogue").

A :class:`DialogueLog` holds what the user said, placed on the dialogue's clock from the script
(:class:`UserSpeech`: kind, true onset/offset of the voice, mid-turn pauses), and what the agent's
session emitted, each event stamped with the time it left the session (:class:`TimedEvent`; event
``type`` strings are the dialogue protocol's, ``streamrt.dialogue.events``). All times are ms on
one clock. :func:`dialogue_scores` gives, over any number of dialogues:

- response onset (p50/p90): end of a user turn's speech -> the agent's first audio of its answer;
- barge-in reaction (p50/p90): onset of an interruption -> the agent's audio stopped;
- pause takeover rate: share of scripted mid-turn pauses in which the agent starts a turn;
- false barge-in rate: share of backchannels during agent speech that interrupt the agent;
- with speech that is not the user's (``streamrt dialogue eval --echo/--background``): barge-ins
  on background speech (another voice while the agent speaks) and on the agent's own echo alone;
- per-stage timings (p50/p90) where the events allow: ASR finalisation, end-of-turn decision,
  LLM time to first text, TTS first chunk (these four add up to the response onset).

Full-Duplex-Bench v1 (Lin et al. 2025, arXiv:2503.04721, sec. 3) measures turn-taking latency
from the end of user speech to the start of the model's speech, and takeover rate as the share
of trials in which the model takes the turn; we follow those definitions on scripted times rather
than on VAD of the recorded channels, so no threshold enters the measure.

Agent playback model (the client's): an agent turn's audio plays from its first ``agent_audio``
event in real time, each chunk at max(its release time, the end of the previous chunk); an
``agent_pause`` cuts it where it is (the client drops what it holds; audio released after the
turn's ``agent_resume`` plays again from its release), and it stops at the turn's ``interrupted``
event (the client drops what it holds). Pure Python + numpy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from streamrt.errors import LogFormatError

USER_KINDS = ("turn", "backchannel", "interruption", "background")
"""A ``turn`` and an ``interruption`` (a turn that starts while the agent speaks) expect an
answer; a ``backchannel`` ("mm-hm", "okay") expects none and should not stop the agent;
``background`` is speech the microphone hears that is not the user's (a TV, another person): it
expects nothing and must not stop the agent."""


@dataclass(frozen=True)
class UserSpeech:
    """One scripted stretch of user speech: the voice's true ``onset_ms`` and ``offset_ms`` on the
    dialogue's clock, and the silent ``pauses`` (start_ms, end_ms) inside it."""

    kind: str
    onset_ms: float
    offset_ms: float
    pauses: tuple[tuple[float, float], ...] = ()
    text: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "pauses", tuple((float(a), float(b)) for a, b in self.pauses))

    @property
    def last_resume_ms(self) -> float:
        """Where the last stretch of voice starts (after the last pause)."""
        return self.pauses[-1][1] if self.pauses else self.onset_ms


@dataclass(frozen=True)
class TimedEvent:
    """A session event at ``time_ms``. ``turn``: the agent turn (agent events); ``duration_ms``:
    the audio length of an ``agent_audio`` event; ``text``: the event's text, if any; ``data``:
    its other figures that a report shows (``user_turn_score`` / ``user_turn_end``:
    ``end_of_turn_p``, ``silence_ms``; None where the event had none)."""

    time_ms: float
    type: str
    turn: int | None = None
    duration_ms: float = 0.0
    text: str = ""
    data: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class DialogueLog:
    id: str
    user: tuple[UserSpeech, ...]
    events: tuple[TimedEvent, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "user", tuple(sorted(self.user, key=lambda u: u.onset_ms)))
        object.__setattr__(self, "events", tuple(self.events))


@dataclass(frozen=True)
class AgentTurn:
    """One agent turn as the user heard it: audio from ``start_ms`` to ``stop_ms``."""

    turn: int
    start_ms: float
    stop_ms: float
    interrupted_ms: float | None
    first_text_ms: float | None


def agent_turns(events: Sequence[TimedEvent]) -> list[AgentTurn]:
    """The agent turns that produced audio, by the playback model of the module docstring."""
    play_end: dict[int, float] = {}
    start: dict[int, float] = {}
    interrupted: dict[int, float] = {}
    first_text: dict[int, float] = {}
    for e in sorted(events, key=lambda e: e.time_ms):
        if e.turn is None:
            continue
        if e.type == "agent_audio" and e.turn not in interrupted:
            start.setdefault(e.turn, e.time_ms)
            play_end[e.turn] = max(e.time_ms, play_end.get(e.turn, e.time_ms)) + e.duration_ms
        elif e.type == "agent_pause" and e.turn in play_end and e.turn not in interrupted:
            play_end[e.turn] = min(play_end[e.turn], e.time_ms)
        elif e.type == "interrupted":
            interrupted.setdefault(e.turn, e.time_ms)
        elif e.type == "agent_text":
            first_text.setdefault(e.turn, e.time_ms)
    out = []
    for k in sorted(start, key=start.get):
        stop = play_end[k] if k not in interrupted else min(play_end[k], interrupted[k])
        out.append(AgentTurn(k, start[k], stop, interrupted.get(k), first_text.get(k)))
    return out


@dataclass
class DialogueMeasures:
    """Per-item measures of one or more dialogues (lists; ``None`` where an item has no value)."""

    response_onset_ms: list[float] = field(default_factory=list)
    unanswered: int = 0
    barge_in_ms: list[float] = field(default_factory=list)
    barge_in_missed: int = 0
    pauses: int = 0
    pause_takeovers: int = 0
    backchannels: int = 0
    false_barge_ins: int = 0
    background: int = 0
    background_barge_ins: int = 0
    agent_turns: int = 0
    echo_barge_ins: int = 0
    unprompted_turns: int = 0
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    def extend(self, other: "DialogueMeasures") -> None:
        self.response_onset_ms += other.response_onset_ms
        self.unanswered += other.unanswered
        self.barge_in_ms += other.barge_in_ms
        self.barge_in_missed += other.barge_in_missed
        self.pauses += other.pauses
        self.pause_takeovers += other.pause_takeovers
        self.backchannels += other.backchannels
        self.false_barge_ins += other.false_barge_ins
        self.background += other.background
        self.background_barge_ins += other.background_barge_ins
        self.agent_turns += other.agent_turns
        self.echo_barge_ins += other.echo_barge_ins
        self.unprompted_turns += other.unprompted_turns
        for s in STAGES:
            self.stages[s] += other.stages[s]


STAGES = ("asr_final", "endpoint", "llm_ttft", "tts_first_chunk")
"""Per-stage timings of an answered turn, consecutive so they add up to its response onset:
``asr_final``: end of user speech -> the ASR's last words before the ``user_turn_end`` decision (the
last non-empty ``user_partial`` or ``user_commit`` stamped before it; without decision events, the
last ``user_commit`` before the answer); ``endpoint``: those words -> the decision; ``llm_ttft``: the decision -> the answer's first ``agent_text``;
``tts_first_chunk``: that text -> the answer's first audio. A stage whose bounding events are not
in the log is left out for that turn."""


def measure(log: DialogueLog) -> DialogueMeasures:
    """The per-item measures of one dialogue. Definitions (all ms on the log's clock):

    - A user ``turn``/``interruption`` u is *answered* by the first agent turn whose audio starts
      in [u.last_resume_ms, onset of the next turn/interruption) and still plays after u's voice
      ends (one that the user's own speech stopped is an overlap, not the answer); response onset
      = that start - u.offset_ms (negative when the agent starts before the user's voice ends).
    - An ``interruption`` with onset o during agent speech (an agent turn with start <= o < stop)
      has barge-in reaction = that turn's stop - o, stop being when its audio stopped for good: the
      end of its last chunk's playback (cut by an ``agent_pause``), or its ``interrupted`` event if
      that comes first (a session that pauses its audio at once and sends ``interrupted`` later is
      credited with the pause).
      A turn never interrupted also counts the barge-in as missed.
      An interruption while the agent is silent is just a turn.
    - A pause (p0, p1) of turn u is *taken over* if an agent turn starts in [p0, b), b = the start
      of u's next pause, or u.offset_ms after its last one (the agent spoke while the user had
      not finished).
    - A ``backchannel`` with onset o during agent speech is a *false barge-in* if that agent turn
      is interrupted at t >= o and no other user speech starts in (o, t]; ``background`` speech
      likewise counts in ``background_barge_ins`` (no user speech starting in (o, t]).
    - An agent turn interrupted at t with no speech at all (user's or background) sounding
      between its start and t is an *echo barge-in*: only the agent's own voice was there.
    - An agent turn that answers no ``turn``/``interruption`` (by the rule above) is *unprompted*:
      it answered background speech, or it took over a pause (then it also counts there).
    """
    m = DialogueMeasures()
    turns = agent_turns(log.events)
    events = sorted(log.events, key=lambda e: e.time_ms)
    replies: set[int] = set()
    for u, reply in answers(log, turns):
        if reply is None:
            m.unanswered += 1
        else:
            replies.add(reply.turn)
            m.response_onset_ms.append(reply.start_ms - u.offset_ms)
            _stages(m, u, reply, events)
        bounds = [p[0] for p in u.pauses[1:]] + [u.offset_ms]
        for (p0, _), b in zip(u.pauses, bounds):
            m.pauses += 1
            m.pause_takeovers += any(p0 <= t.start_ms < b for t in turns)
    for u in log.user:
        speaking = next((t for t in turns if t.start_ms <= u.onset_ms < t.stop_ms), None)
        if speaking is None or u.kind == "turn":
            continue
        if u.kind == "interruption":
            m.barge_in_ms.append(speaking.stop_ms - u.onset_ms)
            m.barge_in_missed += speaking.interrupted_ms is None
        elif u.kind == "backchannel":
            m.backchannels += 1
            t = speaking.interrupted_ms
            if t is not None and t >= u.onset_ms:
                m.false_barge_ins += not any(u.onset_ms < v.onset_ms <= t for v in log.user if v is not u)
        elif u.kind == "background":
            m.background += 1
            t = speaking.interrupted_ms
            if t is not None and t >= u.onset_ms:
                m.background_barge_ins += not any(u.onset_ms < v.onset_ms <= t for v in log.user
                                                  if v.kind != "background")
    for t in turns:
        m.agent_turns += 1
        m.unprompted_turns += t.turn not in replies
        if t.interrupted_ms is not None:
            m.echo_barge_ins += not any(u.onset_ms < t.interrupted_ms and u.offset_ms > t.start_ms for u in log.user)
    return m


def answers(log: DialogueLog, turns: Sequence[AgentTurn] | None = None) -> list[tuple[UserSpeech, AgentTurn | None]]:
    """Each user ``turn``/``interruption`` of ``log`` with the agent turn that answered it (None if
    none did), by :func:`measure`'s rule; ``turns``: ``agent_turns(log.events)`` if given."""
    turns = agent_turns(log.events) if turns is None else turns
    asked = [u for u in log.user if u.kind in ("turn", "interruption")]
    out = []
    for i, u in enumerate(asked):
        bound = asked[i + 1].onset_ms if i + 1 < len(asked) else math.inf
        out.append((u, next((t for t in turns if u.last_resume_ms <= t.start_ms < bound and t.stop_ms > u.offset_ms),
                            None)))
    return out


def _stages(m: DialogueMeasures, u: UserSpeech, reply: AgentTurn, events: Sequence[TimedEvent]) -> None:
    within = [e for e in events if u.onset_ms <= e.time_ms <= reply.start_ms]
    decided = next((e.time_ms for e in reversed(within) if e.type == "user_turn_end"), None)
    if decided is None:
        commit = next((e.time_ms for e in reversed(within) if e.type == "user_commit"), None)
    else:  # the ASR's last words before the decision (what the decision commits itself is not ASR time)
        commit = next((e.time_ms for e in reversed(within) if e.type in ("user_commit", "user_partial")
                       and e.text.strip() and e.time_ms < decided), None)
    text = reply.first_text_ms
    if commit is not None:
        m.stages["asr_final"].append(commit - u.offset_ms)
        if decided is not None:
            m.stages["endpoint"].append(decided - commit)
    if decided is not None and text is not None:
        m.stages["llm_ttft"].append(text - decided)
    if text is not None:
        m.stages["tts_first_chunk"].append(reply.start_ms - text)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p % of the values at or below
    it (sorted[ceil(p/100 * n) - 1]); NaN for no values. No interpolation, so every figure is a
    measured item (p50 of [1, 2] is 1)."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    if not values:
        return math.nan
    ordered = sorted(values)
    return float(ordered[max(1, math.ceil(p / 100.0 * len(ordered))) - 1])


def _rate(k: int, n: int) -> float:
    return k / n if n else math.nan


def dialogue_scores(logs: Iterable[DialogueLog]) -> dict[str, float | int]:
    """Corpus scores over ``logs`` (items pooled over all dialogues). Keys: ``turns``,
    ``unanswered``, ``response_onset_p50_ms``/``_p90_ms``, ``interruptions`` (during agent speech),
    ``barge_in_missed``, ``barge_in_p50_ms``/``_p90_ms``, ``pauses``, ``pause_takeovers``,
    ``pause_takeover_rate``, ``backchannels`` (during agent speech), ``false_barge_ins``,
    ``false_barge_in_rate``, ``background`` (background speech during agent speech),
    ``background_barge_ins``, ``background_barge_in_rate``, ``agent_turns`` (with audio),
    ``echo_barge_ins``, ``echo_barge_in_rate``, ``unprompted_turns``, and ``<stage>_p50_ms``/``_p90_ms`` per :data:`STAGES`. A figure with
    no item is NaN."""
    m = DialogueMeasures()
    for log in logs:
        m.extend(measure(log))
    out: dict[str, float | int] = {
        "turns": len(m.response_onset_ms) + m.unanswered,
        "unanswered": m.unanswered,
        "response_onset_p50_ms": percentile(m.response_onset_ms, 50),
        "response_onset_p90_ms": percentile(m.response_onset_ms, 90),
        "interruptions": len(m.barge_in_ms),
        "barge_in_missed": m.barge_in_missed,
        "barge_in_p50_ms": percentile(m.barge_in_ms, 50),
        "barge_in_p90_ms": percentile(m.barge_in_ms, 90),
        "pauses": m.pauses,
        "pause_takeovers": m.pause_takeovers,
        "pause_takeover_rate": _rate(m.pause_takeovers, m.pauses),
        "backchannels": m.backchannels,
        "false_barge_ins": m.false_barge_ins,
        "false_barge_in_rate": _rate(m.false_barge_ins, m.backchannels),
        "background": m.background,
        "background_barge_ins": m.background_barge_ins,
        "background_barge_in_rate": _rate(m.background_barge_ins, m.background),
        "agent_turns": m.agent_turns,
        "echo_barge_ins": m.echo_barge_ins,
        "echo_barge_in_rate": _rate(m.echo_barge_ins, m.agent_turns),
        "unprompted_turns": m.unprompted_turns,
    }
    for s in STAGES:
        out[f"{s}_p50_ms"] = percentile(m.stages[s], 50)
        out[f"{s}_p90_ms"] = percentile(m.stages[s], 90)
    return out


# --- the log file: JSON lines, one dialogue per line -------------------------------------------

def write_dialogue_logs(path: str | Path, logs: Iterable[DialogueLog]) -> None:
    """One JSON object per dialogue: {"id", "user": [UserSpeech...], "events": [TimedEvent...]}."""
    with open(path, "w", encoding="utf-8") as f:
        for log in logs:
            doc = {"id": log.id, "user": [asdict(u) for u in log.user], "events": [asdict(e) for e in log.events]}
            f.write(json.dumps(doc) + "\n")


def read_dialogue_logs(path: str | Path) -> list[DialogueLog]:
    """Read what :func:`write_dialogue_logs` wrote; a bad line raises LogFormatError naming the
    file, the line and the problem."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(_parse_log(json.loads(line)))
            except (ValueError, TypeError, KeyError) as e:
                problem = f"missing key {e}" if isinstance(e, KeyError) else str(e)
                raise LogFormatError(str(path), n, problem) from None
    return out


def _parse_log(doc: dict) -> DialogueLog:
    if not isinstance(doc, dict):
        raise ValueError("a line must be a JSON object")
    user = []
    for u in doc["user"]:
        if u["kind"] not in USER_KINDS:
            raise ValueError(f"user speech kind must be one of {', '.join(USER_KINDS)}, got {u['kind']!r}")
        speech = UserSpeech(u["kind"], float(u["onset_ms"]), float(u["offset_ms"]),
                            tuple(tuple(p) for p in u.get("pauses", ())), u.get("text", ""))
        if not speech.onset_ms <= speech.offset_ms:
            raise ValueError(f"user speech ends before it starts: onset {speech.onset_ms} > offset {speech.offset_ms}")
        user.append(speech)
    events = [TimedEvent(float(e["time_ms"]), str(e["type"]), e.get("turn"), float(e.get("duration_ms", 0.0)),
                         e.get("text", ""), dict(e.get("data") or {})) for e in doc["events"]]
    for e in events:
        if not math.isfinite(e.time_ms):
            raise ValueError(f"event time must be finite, got {e.time_ms}")
    return DialogueLog(str(doc["id"]), tuple(user), tuple(events))
