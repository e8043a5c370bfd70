"""What a ``streamrt dialogue eval`` run reports: the agent's speech and its intelligibility (WER
of Whisper on it against the text it was given), the scores of the runs' event logs
(``metrics.dialogue``), the issue's goals with pass/fail, and their printing."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from metrics.dialogue import DialogueLog, answers, dialogue_scores
from streamrt.evaluation.dialogue import SAMPLE_RATE, ScriptRun


def agent_speech(runs: Sequence[ScriptRun]) -> list[tuple[np.ndarray, int, str]]:
    """(audio, rate, text) of every agent turn that was spoken to its end (an interrupted turn's
    audio and text do not match): each chunk at its offset, in the order released, so audio sent
    again after an ``agent_resume`` replaces what it overlaps."""
    out = []
    for run in runs:
        for turn, text in run.agent_text.items():
            chunks = run.agent_audio.get(turn, [])
            if turn in run.interrupted or not chunks or not text.strip():
                continue
            rate = chunks[0][2]
            pieces: list[np.ndarray] = []
            end = 0  # samples in pieces
            for offset_ms, samples, _ in chunks:
                at = round(offset_ms * rate / 1000)
                while end > at:  # sent again from ``at``: cut what it replaces
                    cut = min(end - at, len(pieces[-1]))
                    pieces[-1] = pieces[-1][:len(pieces[-1]) - cut]
                    end -= cut
                    if not len(pieces[-1]):
                        pieces.pop()
                pieces.append(samples)
                end += len(samples)
            out.append((np.concatenate(pieces).astype(np.float32), rate, text))
    return out


def agent_wer(speech: Sequence[tuple[np.ndarray, int, str]], transcribe: Callable[[np.ndarray], str]) -> dict:
    """Intelligibility: corpus WER (%, Whisper English normaliser) of ``transcribe`` (16 kHz audio
    -> text) on the agent's speech against the text it was given; audio resampled with soxr."""
    import soxr

    from metrics.quality import wer

    hyps, refs = [], []
    for samples, rate, text in speech:
        x = samples if rate == SAMPLE_RATE else soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ")
        hyps.append(transcribe(np.asarray(x, dtype=np.float32)))
        refs.append(text)
    if not refs:
        return {"agent_wer": math.nan, "agent_turns_transcribed": 0, "agent_transcripts": []}
    return {"agent_wer": wer(hyps, refs, normalize=True), "agent_turns_transcribed": len(refs),
            "agent_transcripts": [{"text": r, "heard": h} for r, h in zip(refs, hyps)]}


GOALS = (
    ("response onset, p50", "response_onset_p50_ms", "<= 500 ms", 500.0),
    ("response onset, p90", "response_onset_p90_ms", "<= 800 ms", 800.0),
    ("barge-in reaction, p90", "barge_in_p90_ms", "<= 300 ms", 300.0),
    ("pause takeover on 1 s mid-turn pauses", "pause_takeover_rate", "<= 10 %", 0.10),
    ("false barge-ins on backchannels", "false_barge_in_rate", "<= 20 %", 0.20),
    ("Whisper WER of the agent's speech against its text", "agent_wer", "<= 10 %", 10.0),
)
"""The issue's Goals table: (measure, report key, goal as written, bound: ours must be <= it)."""


def report(runs: Sequence[ScriptRun], wer_part: dict, settings: dict) -> dict:
    """Scores of all runs (``metrics.dialogue.dialogue_scores``), the agent's WER, compute, the
    goals with pass/fail, and the settings."""
    rep = report_logs([r.log for r in runs], wer_part, settings)
    virtual = sum(r.virtual_s for r in runs)
    compute = sum(r.compute_s for r in runs)
    rep["scores"].update(virtual_s=round(virtual, 2), compute_s=round(compute, 2),
                         compute_rtf=round(compute / virtual, 4) if virtual else None,
                         agent_resumed=sum(r.summary.get("resumed_after_backchannel", 0) for r in runs),
                         user_continued=sum(r.summary.get("user_continued", 0) for r in runs))
    rep["errors"] = [e for r in runs for e in r.errors]
    return rep


def report_logs(logs: Sequence[DialogueLog], wer_part: dict, settings: dict) -> dict:
    """:func:`report` from the logs alone (``streamrt dialogue score``): no compute figures."""
    scores: dict[str, Any] = dict(dialogue_scores(logs))
    scores.update({k: v for k, v in wer_part.items() if k != "agent_transcripts"})
    scores.update(dialogues=len(logs), virtual_s=None, compute_s=None, compute_rtf=None)
    goals = []
    for name, key, goal, bound in GOALS:
        v = scores.get(key, math.nan)
        goals.append({"measure": name, "key": key, "goal": goal, "ours": v,
                      "met": bool(v <= bound) if isinstance(v, (int, float)) and not math.isnan(v) else None})
    return {"scores": _clean(scores), "goals": _clean(goals), "settings": settings, "errors": [],
            "agent_transcripts": wer_part.get("agent_transcripts", []), "turns": _clean(turn_rows(logs))}


def turn_rows(logs: Sequence[DialogueLog]) -> list[dict]:
    """Per user turn (``turn``/``interruption``), why its answer came when it did: ``said`` (the
    script's words), ``heard`` (the text the agent answered, ``user_turn_end``), the policy's
    ``end_of_turn_p`` and ``silence_ms`` at that decision, the end-of-turn ``scores`` that came
    after the turn's last pause ({silence_ms, p, text}: when each arrived into the silence), and
    ``onset_ms`` (None: unanswered). Decision fields are None when the log has no such events."""
    rows = []
    for log in logs:
        events = sorted(log.events, key=lambda e: e.time_ms)
        pairs = answers(log)
        for i, (u, reply) in enumerate(pairs):
            end = reply.start_ms if reply is not None else (
                pairs[i + 1][0].onset_ms if i + 1 < len(pairs) else math.inf)
            within = [e for e in events if u.onset_ms <= e.time_ms <= end]
            decided = next((e for e in reversed(within) if e.type == "user_turn_end"), None)
            scores = [{"silence_ms": e.data.get("silence_ms"), "p": e.data.get("end_of_turn_p"), "text": e.text}
                      for e in within if e.type == "user_turn_score" and e.time_ms >= u.last_resume_ms
                      and (decided is None or e.time_ms <= decided.time_ms)]
            rows.append({"dialogue": log.id, "kind": u.kind, "said": u.text,
                         "heard": decided.text if decided is not None else None,
                         "end_of_turn_p": decided.data.get("end_of_turn_p") if decided is not None else None,
                         "silence_ms": decided.data.get("silence_ms") if decided is not None else None,
                         "scores": scores,
                         "onset_ms": reply.start_ms - u.offset_ms if reply is not None else None})
    return rows


def format_turns(rows: Sequence[dict]) -> str:
    """:func:`turn_rows` as Markdown: what was heard, the score and the silence the answer waited
    for, the scores as they came (silence ms: p), and the response onset."""

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = ["| dialogue | user turn (as heard) | p at decision | silence waited, ms | scores (silence ms: p) | onset, ms |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        heard = (r["heard"] if r["heard"] is not None else f"({r['said']})").replace("|", "/")
        came = " ".join(f"{num(c['silence_ms'], '.0f')}: {num(c['p'], '.3f')}" for c in r["scores"])
        onset = "unanswered" if r["onset_ms"] is None else f"{r['onset_ms']:.0f}"
        lines.append(f"| {r['dialogue']} | {heard} | {num(r['end_of_turn_p'], '.3f')} | "
                     f"{num(r['silence_ms'], '.0f')} | {came} | {onset} |")
    return "\n".join(lines)


def format_value(key: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if key.endswith("_rate"):
        return f"{100 * v:.0f} %"
    if key == "agent_wer":
        return f"{v:.1f} %"
    if key.endswith("_ms"):
        return f"{v:.0f} ms"
    return str(v)


def _clean(x: Any) -> Any:
    """NaN/inf -> None (JSON null); floats rounded to 4 places."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    if isinstance(x, float):
        return round(x, 4) if math.isfinite(x) else None
    return x
