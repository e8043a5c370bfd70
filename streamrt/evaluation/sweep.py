"""Latency-quality sweep (``streamrt eval sweep``): one data set through many streaming settings.

    grid = load_grid("grid.yaml")                      # or default_grid(), or points_from_lists(...)
    models = WhisperPointModels("tiny.en")             # weights loaded once, shared by every point
    summary = run_sweep(grid, "data/testset.tsv", "runs/sweep", models=models)

Each point is evaluated like ``streamrt eval run`` and written to ``OUT/<point>/`` (instances.log,
scores.json); the offline reference goes to ``OUT/offline/``. A point that fails (bad settings the
grid could not catch, a model error) is recorded with its error and the others still run. The
summary is ``OUT/sweep.json``, ``OUT/sweep.md`` and the latency-quality plot ``OUT/sweep.png``
(``streamrt.evaluation.plot``). With ``resume=True`` a point whose scores.json exists is read back, not re-run.
"""

from __future__ import annotations

import json
import math
import os
import platform
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from streamrt.evaluation.grid import SweepGrid, SweepPoint, parse_grid
from streamrt.evaluation.runner import EvalResult, evaluate_offline, evaluate_streaming, write_outputs

SCORE_KEYS = ("WER", "WER_raw", "BLEU", "AL", "LAAL", "LAAL_CA", "YAAL", "YAAL_CA", "RTF", "n_utterances")
TABLE_KEYS = ("WER", "LAAL", "LAAL_CA", "YAAL", "YAAL_CA", "AL", "RTF")
OFFLINE = "offline"


class PointModels(Protocol):
    """What the sweep needs from a model family; ``WhisperPointModels`` is the real one."""

    def build(self, encoder: str, chunk_ms: int) -> Any:
        """A streaming model (``streamrt.engine.StreamingModel``) for one encoder mode and chunk."""

    def transcribe(self, audio, row, *, task: str, language: str | None) -> str:
        """The offline reference text of one file."""

    def describe(self) -> dict[str, Any]:
        """Settings shared by every point (model name...)."""


class SweepProgress(Protocol):
    def point(self, name: str, index: int, total: int) -> Callable[[str, int, int], None]:
        """Called when a point starts; returns its per-utterance ``progress(id, done, total)``."""

    def point_done(self, row: Mapping[str, Any]) -> None:
        ...


@dataclass
class SweepSummary:
    rows: list[dict[str, Any]]  # one per point, the offline reference first (name "offline")
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def offline(self) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["name"] == OFFLINE), None)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]


def default_grid() -> SweepGrid:
    """A small sweep for ``streamrt bench``: offline, whisper_streaming's LocalAgreement-2 over
    re-encoding, and AlignAtt / LocalAgreement-2 over the block-causal encoder, at 500 and 1000 ms."""
    return parse_grid({
        "offline": True,
        "chunk_ms": [500, 1000],
        "policies": [
            {"name": "local-agreement", "options": {"n": 2}, "encoders": ["reencode", "block-causal"]},
            {"name": "alignatt", "options": {"frames": 4}, "encoders": ["block-causal"]},
        ],
    }, source="default_grid()")


def run_default_sweep(data: str | Path, out_dir: str | Path, *, model: str = "tiny.en", limit: int | None = None,
                      progress: SweepProgress | None = None) -> SweepSummary:
    """``default_grid()`` with Whisper ``model`` on ``data`` (for ``streamrt bench all`` / ``make bench``).
    Set torch's threads first (1 is steadiest on a shared machine)."""
    return run_sweep(default_grid(), data, out_dir, models=WhisperPointModels(model), limit=limit, progress=progress)


class WhisperPointModels:
    """Loads Whisper once (``load_whisper``) and builds a ``WhisperStreamingModel`` per encoder mode and
    chunk over the same weights. ``settings``: WhisperStreamSettings overrides; ``encoder_settings``:
    ``make_encoder`` keywords (block-causal's ``chunk_frames`` defaults to the chunk's frames)."""

    def __init__(self, name: str = "tiny.en", *, settings: Mapping[str, Any] | None = None,
                 encoder_settings: Mapping[str, Any] | None = None, device: str = "cpu"):
        self.name = name
        self.settings = dict(settings or {})
        self.encoder_settings = dict(encoder_settings or {})
        self.device = device
        self._bundle = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the weights now (otherwise the first point does)."""
        _ = self.bundle

    @property
    def bundle(self):
        with self._lock:
            if self._bundle is None:
                from streamrt.models.whisper import load_whisper

                self._bundle = load_whisper(self.name, device=self.device)
            return self._bundle

    def build(self, encoder: str, chunk_ms: int):
        from streamrt.encoders import make_encoder
        from streamrt.features.logmel import LogMelStream
        from streamrt.tasks.whisper_stream import WhisperStreamingModel, WhisperStreamSettings

        bundle = self.bundle
        fields = WhisperStreamSettings.__dataclass_fields__
        unknown = set(self.settings) - set(fields)
        if unknown:
            from streamrt.errors import ConfigError

            raise ConfigError(f"unknown Whisper streaming settings: {', '.join(sorted(unknown))}; known: {', '.join(fields)}")
        enc_settings = dict(self.encoder_settings)
        if encoder == "block-causal":
            enc_settings.setdefault("chunk_frames", max(1, round(chunk_ms / 20)))  # one block per step
        enc = make_encoder(bundle.model, encoder, **enc_settings)
        n_mels = bundle.n_mels
        settings = replace(WhisperStreamSettings(), **{**self.settings, "chunk_ms": chunk_ms})
        return WhisperStreamingModel(bundle, enc, lambda: LogMelStream(n_mels=n_mels), settings, encoder_mode=encoder)

    def transcribe(self, audio, row, *, task: str, language: str | None) -> str:
        from streamrt.models.whisper import transcribe_offline

        return transcribe_offline(self.bundle, audio, task=task, language=row.language or language)

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "settings": self.settings, "encoder_settings": self.encoder_settings}


def run_sweep(
    grid: SweepGrid,
    data: str | Path,
    out_dir: str | Path,
    *,
    models: PointModels,
    task: str = "transcribe",
    language: str | None = None,
    limit: int | None = None,
    jobs: int = 1,
    resume: bool = False,
    clock_factory: Callable[[], Any] | None = None,
    progress: SweepProgress | None = None,
    evaluate: Callable[..., EvalResult] = evaluate_streaming,
    evaluate_reference: Callable[..., EvalResult] = evaluate_offline,
) -> SweepSummary:
    """Run every point (and the offline reference when ``grid.offline``); write each point's folder
    and the summary (sweep.json, sweep.md). ``jobs`` > 1 runs points in threads, each with its own
    models over the shared weights (compute-aware latencies then include the contention)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    todo: list[SweepPoint | None] = ([None] if grid.offline else []) + list(grid.points)
    total = len(todo)
    local = threading.local()

    def model_for(point: SweepPoint):
        cache = local.__dict__.setdefault("models", {})
        key = (point.encoder, point.chunk_ms)
        if key not in cache:
            cache.clear()  # points run grouped by encoder/chunk: one model per thread at a time
            cache[key] = models.build(point.encoder, point.chunk_ms)
        return cache[key]

    def one(index: int, point: SweepPoint | None) -> dict[str, Any]:
        name = OFFLINE if point is None else point.name
        row = _describe_point(point)
        scores_path = out / name / "scores.json"
        tick = progress.point(name, index, total) if progress else None
        if resume and scores_path.is_file():
            doc = json.loads(scores_path.read_text())
            row.update(status="reused", **{k: doc.get(k) for k in SCORE_KEYS}, errors=len(doc.get("errors", [])))
            if progress:
                progress.point_done(row)
            return row
        clock = clock_factory() if clock_factory else None
        t0 = time.perf_counter()
        try:
            if point is None:
                result = evaluate_reference(
                    lambda audio, r: models.transcribe(audio, r, task=task, language=language),
                    data, limit=limit, progress=tick, **({"clock": clock} if clock else {}))
                settings: dict[str, Any] = {**models.describe(), "mode": OFFLINE, "task": task, "language": language}
            else:
                model = model_for(point)
                options = {"policy": point.policy, "policy_options": point.options, "task": task, "language": language}
                result = evaluate(model, data, options=options, feed_ms=point.chunk_ms, limit=limit,
                                  progress=tick, **({"clock": clock} if clock else {}))
                described = model.describe() if hasattr(model, "describe") else {}
                settings = {**models.describe(), **described, "policy": point.policy,
                            "policy_options": point.options, "encoder_mode": point.encoder,
                            "chunk_ms": point.chunk_ms, "task": task, "language": language}
            write_outputs(out / name, result, settings)
        except Exception as e:  # one point's failure must not end a long sweep
            msg = getattr(e, "message", None) or str(e)
            row.update(status="failed", error=f"{type(e).__name__}: {msg}")
        else:
            row.update(status="ok", **{k: result.scores.get(k) for k in SCORE_KEYS}, errors=len(result.errors))
            if not result.utterances:
                first = result.errors[0] if result.errors else "no rows"
                row.update(status="failed", error=f"no utterance was scored ({len(result.errors)} errors; first: {first})")
        row["seconds"] = round(time.perf_counter() - t0, 1)
        if progress:
            progress.point_done(row)
        return row

    # run the points of one encoder mode and chunk together (one model each), report in grid order
    order = sorted(range(total), key=lambda i: (todo[i] is not None, _model_key(todo[i])))
    if jobs <= 1:
        done = {i: one(n, todo[i]) for n, i in enumerate(order)}
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            done = dict(zip(order, pool.map(lambda ni: one(ni[0], todo[ni[1]]), enumerate(order))))
    rows = [done[i] for i in range(total)]
    import torch

    summary = SweepSummary(rows, {**machine_info(), "data": str(data), "task": task, "language": language,
                                  "limit": limit, "jobs": jobs, "torch_threads": torch.get_num_threads(),
                                  "clock": type(clock_factory()).__name__ if clock_factory else "MonotonicClock",
                                  **models.describe()})
    write_summary(out, summary)
    return summary


def _model_key(point: SweepPoint | None) -> tuple[str, int]:
    return ("", 0) if point is None else (point.encoder, point.chunk_ms)


def _describe_point(point: SweepPoint | None) -> dict[str, Any]:
    if point is None:
        return {"name": OFFLINE, "policy": OFFLINE, "policy_options": {}, "encoder": None, "chunk_ms": None,
                "curve": OFFLINE}
    return {"name": point.name, "policy": point.policy, "policy_options": point.options,
            "encoder": point.encoder, "chunk_ms": point.chunk_ms, "curve": point.curve}


def machine_info() -> dict[str, Any]:
    """Where and when the sweep ran (for the report): date, load average, cores, git commit."""
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5, cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu_count": os.cpu_count(),
            "load_average": [round(x, 2) for x in load] if load else None, "platform": platform.platform(),
            "git_commit": commit}


def goal_check(summary: SweepSummary, *, max_wer_delta: float = 1.0, max_laal_ms: float = 1000.0,
               key: str = "LAAL") -> dict[str, Any] | None:
    """The best-WER point with ``key`` <= max_laal_ms, and whether it is within max_wer_delta (absolute
    WER) of offline. None without an offline row or without any point under the latency bound."""
    off = summary.offline
    if not off or off.get("WER") is None:
        return None
    fast = [r for r in summary.rows if r["name"] != OFFLINE and r["status"] != "failed"
            and _num(r.get(key)) is not None and r[key] <= max_laal_ms and _num(r.get("WER")) is not None]
    if not fast:
        return {"met": False, "point": None, "key": key, "max_laal_ms": max_laal_ms, "offline_WER": off["WER"]}
    best = min(fast, key=lambda r: (r["WER"], r[key]))
    return {"met": best["WER"] <= off["WER"] + max_wer_delta, "point": best["name"], "WER": best["WER"],
            key: best[key], "offline_WER": off["WER"], "key": key, "max_laal_ms": max_laal_ms,
            "max_wer_delta": max_wer_delta}


def _num(x: Any) -> float | None:
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def write_summary(out: Path, summary: SweepSummary) -> None:
    goals = {k: goal_check(summary, key=k) for k in ("LAAL", "LAAL_CA")} if summary.meta.get("task") != "translate" else {}
    doc = {"meta": summary.meta, "goal": goals, "points": summary.rows}
    (out / "sweep.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (out / "sweep.md").write_text(markdown_table(summary, goals))
    from streamrt.evaluation.plot import plot_sweep

    quality = "BLEU" if summary.meta.get("task") == "translate" else "WER"
    title = f"{summary.meta.get('model', '')} on {Path(str(summary.meta.get('data', ''))).name}".strip()
    plot_sweep(summary.rows, out / "sweep.png", quality=quality, title=title)


def markdown_table(summary: SweepSummary, goals: Mapping[str, Any] | None = None) -> str:
    """The summary as a Markdown table (latencies in ms, WER in percent); failed points listed below."""
    quality = "BLEU" if summary.meta.get("task") == "translate" else "WER"
    keys = (quality,) + tuple(k for k in TABLE_KEYS if k != "WER")
    lines = ["| point | policy | options | encoder | chunk ms | " + " | ".join(keys) + " |",
             "|" + "---|" * (5 + len(keys))]
    for r in summary.rows:
        if r["status"] == "failed":
            continue
        opts = ", ".join(f"{k}={v}" for k, v in (r.get("policy_options") or {}).items())
        cells = [r["name"], r["policy"], opts or "-", r.get("encoder") or "-", str(r.get("chunk_ms") or "-")]
        cells += [_fmt(r.get(k), 3 if k == "RTF" else 2 if k in ("WER", "BLEU") else 0) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    for r in summary.failed:
        lines.append(f"\nFAILED {r['name']}: {r['error']}")
    for key, g in (goals or {}).items():
        if g is None or quality != "WER":
            continue
        if g["point"] is None:
            lines.append(f"\nGoal ({key} <= {g['max_laal_ms']:.0f} ms, WER <= offline + 1.0): no point under the bound.")
        else:
            lines.append(f"\nGoal ({key} <= {g['max_laal_ms']:.0f} ms, WER <= offline {g['offline_WER']:.2f} + "
                         f"{g['max_wer_delta']}): {'met' if g['met'] else 'NOT met'}; best {g['point']} "
                         f"WER {g['WER']:.2f} at {key} {g[key]:.0f} ms.")
    return "\n".join(lines) + "\n"


def _fmt(x: Any, digits: int) -> str:
    return "-" if _num(x) is None else f"{x:.{digits}f}"


class RichSweepProgress:
    """A rich progress display: one bar over the points, one over the current point's utterances;
    prints one line per finished point. Use as a context manager."""

    def __init__(self, console, *, disable: bool = False):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.fields[current]}"), console=console,
                            disable=disable)
        self.points = self.bar.add_task("points", total=None, current="")
        self.utts = self.bar.add_task("utterances", total=None, current="")

    def __enter__(self) -> "RichSweepProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def point(self, name: str, index: int, total: int) -> Callable[[str, int, int], None]:
        self.bar.update(self.points, total=total, current=name)
        self.bar.reset(self.utts, total=None, current="")

        def tick(uid: str, done: int, n: int) -> None:
            self.bar.update(self.utts, completed=done, total=n, current=uid)

        return tick

    def point_done(self, row: Mapping[str, Any]) -> None:
        self.bar.advance(self.points)
        if row["status"] == "failed":
            self.console.print(f"[red]failed[/red] {row['name']}: {row['error']}")
        else:
            figures = "  ".join(f"{k}={row.get(k)}" for k in TABLE_KEYS if row.get(k) is not None)
            self.console.print(f"{row['status']:6} {row['name']}: {figures}")
