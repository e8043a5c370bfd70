"""Run a data set through a streaming model (or the offline reference) and score it.

Streaming: every file goes through a ``Session`` in simulated real time: the audio is fed in
``feed_ms`` pieces and after each piece the session steps until the model waits for more, exactly
as a live client that sends audio as it is spoken. The injected clock measures the real compute of
each step, so each word's ``elapsed`` = media consumed when it was committed + compute so far
(SimulEval's definition) and the computation-aware metrics (``*_CA``) come from the same log.

Outputs (``write_outputs``): ``instances.log`` (SimulEval format, one JSON line per utterance,
delays/elapsed in ms per word), ``scores.json`` (corpus scores, RTF, settings, per-utterance
rows, row errors).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from metrics import Instance, score, write_instances
from metrics.quality import bleu, wer
from streamrt.clock import Clock, MonotonicClock
from streamrt.errors import DataError, StreamrtError
from streamrt.evaluation.data import DataRow, load_row_audio, read_data
from streamrt.session import Session, SessionLimits

SAMPLE_RATE = 16000


class ProcessClock:
    """CPU seconds of this process (all threads): compute time that other processes sharing the
    machine do not inflate. With one torch thread it is close to the wall time of an idle machine."""

    def now(self) -> float:
        return time.process_time()


CLOCKS = {"wall": MonotonicClock, "process": ProcessClock}


@dataclass
class Utterance:
    id: str
    row: int
    duration_ms: float
    prediction: str
    reference: str
    compute_ms: float
    delays: list[float] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def rtf(self) -> float:
        return self.compute_ms / self.duration_ms if self.duration_ms > 0 else math.nan


@dataclass
class EvalResult:
    scores: dict[str, Any]
    utterances: list[Utterance]
    errors: list[str]
    instances: list[Instance]


Progress = Callable[[str, int, int], None]  # (utterance id, done, total)


def _instance(i: int, u: Utterance, audio: Path) -> Instance:
    return Instance(
        index=i,
        prediction=u.prediction,
        delays=tuple(u.delays),
        elapsed=tuple(u.elapsed),
        source_length=u.duration_ms,
        reference=u.reference,
        source=[str(audio)],
    )


def stream_one(model, audio: np.ndarray, options: Mapping[str, Any], *, feed_ms: int, clock: Clock) -> Session:
    """Feed ``audio`` to a new session in ``feed_ms`` pieces, stepping after each; then end it."""
    stream = model.create_stream(dict(options))
    session = Session(stream, clock, limits=SessionLimits(max_buffered_audio_s=None, max_stream_s=None))
    piece = max(1, SAMPLE_RATE * feed_ms // 1000)
    for i in range(0, len(audio), piece):
        session.receive_audio(audio[i : i + piece])
        session.run_until_blocked(model)
    session.receive_eof()
    session.run_until_blocked(model)
    if not session.ended:
        raise StreamrtError(f"session did not end (stream ready={stream.is_ready()}, done={stream.is_done()})")
    return session


RowRun = Callable[[DataRow, np.ndarray], Utterance]
"""Runs one row on its audio (mono float32 at SAMPLE_RATE); raises StreamrtError when it fails."""


def streaming_run(model, *, options: Mapping[str, Any], feed_ms: int, clock: Clock | None = None) -> RowRun:
    """The per-row function of ``evaluate_streaming``: each row through its own ``Session`` on ``model``."""
    clock = clock or MonotonicClock()

    def run(row: DataRow, audio: np.ndarray) -> Utterance:
        opts = dict(options)
        if row.language and not opts.get("language"):
            opts["language"] = row.language
        session = stream_one(model, audio, opts, feed_ms=feed_ms, clock=clock)
        words, delays, elapsed = [], [], []
        for unit in session.committed:
            for w in unit.text.split():
                words.append(w)
                delays.append(round(unit.media_delay_ms, 3))
                elapsed.append(round(unit.elapsed_ms, 3))
        return Utterance(
            row.id, row.row, 1000.0 * len(audio) / SAMPLE_RATE, " ".join(words), row.reference,
            session.compute_ms, delays, elapsed, dict(getattr(session.stream, "stats", {})),
        )

    return run


def offline_run(transcribe: Callable[[np.ndarray, DataRow], str], *, clock: Clock | None = None) -> RowRun:
    """The per-row function of ``evaluate_offline``: every word's delay is the file's length (it is
    emitted at the end); elapsed adds the compute time."""
    clock = clock or MonotonicClock()

    def run(row: DataRow, audio: np.ndarray) -> Utterance:
        t0 = clock.now()
        text = transcribe(audio, row)
        compute_ms = 1000.0 * (clock.now() - t0)
        dur = 1000.0 * len(audio) / SAMPLE_RATE
        words = text.split()
        return Utterance(row.id, row.row, dur, " ".join(words), row.reference, compute_ms,
                         [dur] * len(words), [dur + compute_ms] * len(words))

    return run


def evaluate_streaming(
    model,
    data_path: str | Path,
    *,
    options: Mapping[str, Any],
    feed_ms: int,
    clock: Clock | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Stream every usable row; errors (bad rows, unreadable audio, a failing session) are
    collected with the row they name and the rest still runs."""
    run = streaming_run(model, options=options, feed_ms=feed_ms, clock=clock)
    return _evaluate_rows(data_path, run, streaming=True, limit=limit, progress=progress)


def evaluate_offline(
    transcribe: Callable[[np.ndarray, DataRow], str],
    data_path: str | Path,
    *,
    clock: Clock | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """The offline reference: ``transcribe(audio, row)`` on each whole file."""
    return _evaluate_rows(data_path, offline_run(transcribe, clock=clock), streaming=False, limit=limit,
                          progress=progress)


def run_row(data_path: str | Path, row: DataRow, run: RowRun, audio: np.ndarray | None = None) -> Utterance | str:
    """``run`` on the row's audio (read here unless given): the utterance, or the message of the
    StreamrtError that stopped it, naming the row."""
    try:
        return run(row, load_row_audio(data_path, row, SAMPLE_RATE) if audio is None else audio)
    except StreamrtError as e:
        return e.message if isinstance(e, DataError) else f"{data_path}:{row.row}: {row.id}: {e.message}"


def collect_outcomes(outcomes: Iterable[tuple[DataRow, Utterance | str]], errors: list[str], *,
                     streaming: bool) -> EvalResult:
    """Merge per-row outcomes (in data order) into one result: utterances, instances, scores; a
    string outcome is a row error and joins ``errors``. Local and distributed runs both end here,
    so they write the same outputs."""
    errors = list(errors)
    utts: list[Utterance] = []
    instances: list[Instance] = []
    for row, outcome in outcomes:
        if isinstance(outcome, str):
            errors.append(outcome)
        else:
            utts.append(outcome)
            instances.append(_instance(len(instances), outcome, row.audio))
    return EvalResult(_scores(instances, utts, streaming=streaming), utts, errors, instances)


def _evaluate_rows(
    data_path: str | Path,
    run: RowRun,
    *,
    streaming: bool,
    limit: int | None,
    progress: Progress | None,
) -> EvalResult:
    """Read the data file and ``run`` every usable row on its audio; a row that fails (bad row,
    unreadable audio, a failing model) is reported with the row it names and the rest still runs."""
    rows, row_errors = read_data(data_path)
    rows = rows[:limit] if limit is not None else rows

    def outcomes() -> Iterator[tuple[DataRow, Utterance | str]]:
        for k, row in enumerate(rows):
            yield row, run_row(data_path, row, run)
            if progress:
                progress(row.id, k + 1, len(rows))

    return collect_outcomes(outcomes(), [e.message for e in row_errors], streaming=streaming)


def _scores(instances: list[Instance], utts: list[Utterance], *, streaming: bool) -> dict[str, Any]:
    if not instances:
        return {"n_utterances": 0}
    out: dict[str, Any] = dict(score(instances, unit="word", computation_aware=True))
    hyps = [u.prediction for u in utts]
    refs = [u.reference for u in utts]
    out["WER"] = wer(hyps, refs, normalize=True)
    out["WER_raw"] = wer(hyps, refs, normalize=None)
    out["BLEU"] = bleu(hyps, refs)
    total_audio = sum(u.duration_ms for u in utts)
    out["RTF"] = sum(u.compute_ms for u in utts) / total_audio if total_audio else math.nan
    out["n_utterances"] = len(utts)
    out["audio_s"] = round(total_audio / 1000.0, 3)
    out["mode"] = "streaming" if streaming else "offline"
    return {k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v) for k, v in out.items()}


def utterance_rows(result: EvalResult) -> list[dict[str, Any]]:
    """Per-utterance figures: WER (normalised), LAAL, RTF, words, text."""
    from metrics.scoring import sentence_latency

    rows = []
    for u, ins in zip(result.utterances, result.instances):
        laal = sentence_latency("LAAL", ins.delays, ins, "word") if ins.delays else None
        rows.append({
            "id": u.id,
            "row": u.row,
            "audio_s": round(u.duration_ms / 1000.0, 2),
            "WER": round(wer([u.prediction], [u.reference], normalize=True), 2) if u.reference.strip() else None,
            "LAAL_ms": round(laal, 1) if laal is not None and math.isfinite(laal) else None,
            "RTF": round(u.rtf, 3),
            "words": len(u.delays),
            "prediction": u.prediction,
            "reference": u.reference,
            **({"stats": u.stats} if u.stats else {}),
        })
    return rows


def write_outputs(out_dir: str | Path, result: EvalResult, settings: Mapping[str, Any]) -> Path:
    """Write instances.log and scores.json into ``out_dir`` (created); returns scores.json's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_instances(out / "instances.log", result.instances)
    doc = {
        **result.scores,
        "settings": dict(settings),
        "errors": result.errors,
        "utterances": utterance_rows(result),
    }
    path = out / "scores.json"
    path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    return path


def _json_default(x: Any) -> Any:
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "__dataclass_fields__"):
        return asdict(x)
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)
