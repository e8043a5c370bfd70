"""``streamrt eval run``: stream a data set through Whisper with a policy and score latency and quality.

    streamrt eval run --data data/testset.tsv --model tiny.en --policy local-agreement \\
        --policy-opt n=2 --encoder reencode --chunk-ms 1000 --out runs/la2
    streamrt eval run --data data/testset.tsv --model tiny.en --offline --out runs/offline

Writes OUT/instances.log (SimulEval format, ms) and OUT/scores.json (WER, WER_raw, BLEU, AL, LAAL,
DAL, AP, ATD, YAAL and their _CA, RTF, settings, per-utterance rows, row errors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer


def parse_pairs(pairs: list[str] | None, what: str) -> dict[str, Any]:
    """KEY=VALUE strings -> dict; values stay strings except true/false/none/ints/floats for settings."""
    out: dict[str, Any] = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{what} must look like KEY=VALUE, got {p!r}")
        out[key.strip()] = value.strip()
    return out


def _typed(values: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        low = v.lower()
        if low in ("none", "null"):
            out[k] = None
        elif low in ("true", "false"):
            out[k] = low == "true"
        else:
            try:
                out[k] = int(v)
            except ValueError:
                try:
                    out[k] = float(v)
                except ValueError:
                    out[k] = v
    return out


def run(
    data: Path = typer.Option(..., "--data", help="TSV: header, then id<TAB>audio<TAB>reference[<TAB>language]"),
    out: Path = typer.Option(..., "--out", help="output folder (instances.log, scores.json)"),
    model: str = typer.Option("tiny.en", "--model", help="tiny.en, base, or a local HF Whisper folder"),
    policy: str = typer.Option("local-agreement", "--policy", help="policy name (see `streamrt policies`)"),
    policy_opt: Optional[list[str]] = typer.Option(None, "--policy-opt", help="policy option KEY=VALUE (repeat)"),
    encoder: str = typer.Option("reencode", "--encoder", help="encoder mode: reencode, block-causal, sliding"),
    encoder_opt: Optional[list[str]] = typer.Option(None, "--encoder-opt", help="make_encoder KEY=VALUE (repeat)"),
    chunk_ms: int = typer.Option(1000, "--chunk-ms", help="audio per model step and per feed, ms"),
    setting: Optional[list[str]] = typer.Option(None, "--setting", help="WhisperStreamSettings KEY=VALUE (repeat)"),
    task: str = typer.Option("transcribe", "--task", help="transcribe or translate"),
    language: Optional[str] = typer.Option(None, "--language", help="source language code (multilingual models)"),
    offline: bool = typer.Option(False, "--offline", help="run the offline reference (transcribe_offline) instead"),
    limit: Optional[int] = typer.Option(None, "--limit", help="only the first N rows"),
    clock: str = typer.Option("wall", "--clock", help="compute time for elapsed/RTF: wall, or process (CPU "
                              "seconds of this process; steadier on a shared machine)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: torch's)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar or table"),
) -> None:
    """Stream DATA through MODEL with POLICY in simulated real time; write the log and the scores."""
    from rich.console import Console

    from streamrt.errors import StreamrtError
    from streamrt.evaluation.report import print_table, progress_bar
    from streamrt.evaluation.runner import CLOCKS, evaluate_offline, evaluate_streaming, write_outputs

    from streamrt.evaluation.data import read_data

    console = Console(stderr=True, quiet=quiet)
    if clock not in CLOCKS:
        raise typer.BadParameter(f"--clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    policy_options = parse_pairs(policy_opt, "--policy-opt")
    encoder_settings = _typed(parse_pairs(encoder_opt, "--encoder-opt"))
    model_settings = _typed(parse_pairs(setting, "--setting"))
    try:
        read_data(data)  # a missing or empty file fails here, before any model loads
        if not offline:
            from policies import registry

            registry.create(policy, policy_options)  # unknown policy / bad option: fail before loading
        with progress_bar(console, disable=quiet) as progress:
            if offline:
                from streamrt.models.whisper import load_whisper, transcribe_offline

                bundle = load_whisper(model)

                def transcribe(audio, row):
                    return transcribe_offline(bundle, audio, task=task, language=row.language or language)

                result = evaluate_offline(transcribe, data, clock=CLOCKS[clock](), limit=limit, progress=progress)
                settings: dict[str, Any] = {"model": model, "mode": "offline", "task": task, "language": language}
            else:
                from streamrt.tasks.whisper_stream import WhisperStreamingModel

                wmodel = WhisperStreamingModel.from_pretrained(
                    model, encoder_mode=encoder, encoder_settings=encoder_settings, chunk_ms=chunk_ms, **model_settings,
                )
                options = {"policy": policy, "policy_options": policy_options,
                           "task": task, "language": language}
                result = evaluate_streaming(wmodel, data, options=options, feed_ms=chunk_ms, limit=limit,
                                            clock=CLOCKS[clock](), progress=progress)
                settings = {**wmodel.describe(), "policy": policy, "policy_options": options["policy_options"],
                            "task": task, "language": language}
            settings.update(clock=clock, threads=threads)
    except StreamrtError as e:
        typer.echo(f"error: {e.message}", err=True)
        raise typer.Exit(2) from None
    path = write_outputs(out, result, settings)
    for err in result.errors:
        typer.echo(f"skipped: {err}", err=True)
    print_table(console, result)
    keys = ("WER", "WER_raw", "BLEU", "AL", "LAAL", "LAAL_CA", "YAAL", "YAAL_CA", "RTF")
    summary = "  ".join(f"{k}={result.scores[k]}" for k in keys if k in result.scores)
    typer.echo(f"{summary}\nwrote {path} and {path.parent / 'instances.log'}")
    if not result.utterances:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `run` to the `eval` group."""
    app.command("run")(run)
