"""``streamrt eval run``: stream a data set through Whisper with a policy and score latency and quality.

    streamrt eval run --data data/testset.tsv --out runs/default        # the default preset, as served
    streamrt eval run --data data/testset.tsv --preset accurate --out runs/accurate
    streamrt eval run --data data/testset.tsv --model tiny.en --policy local-agreement \\
        --policy-opt n=2 --encoder reencode --chunk-ms 1000 --out runs/la2   # fields over the preset
    streamrt eval run --data data/testset.tsv --model tiny.en --offline --out runs/offline

Writes OUT/instances.log (SimulEval format, ms) and OUT/scores.json (WER, WER_raw, BLEU, AL, LAAL,
DAL, AP, ATD, YAAL and their _CA, RTF, settings, per-utterance rows, row errors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from streamrt.presets import DEFAULT_PRESET


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
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", help="named configuration, as `streamrt serve` "
                               "runs it (`streamrt presets`); the flags below override its fields"),
    policy: Optional[str] = typer.Option(None, "--policy", help="policy name (see `streamrt policies`; preset's if unset)"),
    policy_opt: Optional[list[str]] = typer.Option(None, "--policy-opt", help="policy option KEY=VALUE (repeat)"),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="encoder mode: reencode, block-causal, "
                                          "block-lookahead, sliding (preset's if unset)"),
    encoder_opt: Optional[list[str]] = typer.Option(None, "--encoder-opt", help="make_encoder KEY=VALUE (repeat)"),
    chunk_ms: Optional[int] = typer.Option(None, "--chunk-ms", help="audio per model step and per feed, ms (preset's if unset)"),
    setting: Optional[list[str]] = typer.Option(None, "--setting", help="WhisperStreamSettings KEY=VALUE (repeat)"),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="precision, as served: auto (by this CPU), "
                                           "fp32, bf16, int8-dynamic, ... (see streamrt.quant; preset's, auto, if unset)"),
    task: str = typer.Option("transcribe", "--task", help="transcribe or translate"),
    language: Optional[str] = typer.Option(None, "--language", help="source language code (multilingual models)"),
    offline: bool = typer.Option(False, "--offline", help="run the offline reference (transcribe_offline) instead"),
    limit: Optional[int] = typer.Option(None, "--limit", help="only the first N rows"),
    clock: str = typer.Option("wall", "--clock", help="compute time for elapsed/RTF: wall, or process (CPU "
                              "seconds of this process; steadier on a shared machine)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: torch's)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar or table"),
    use_ray: bool = typer.Option(False, "--ray", help="fan the rows out over a Ray cluster (streamrt[ray]; "
                                 "docs/scaling.md): same outputs as a local run"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="cluster to join (default: env "
                                              "RAY_ADDRESS, else a local one)"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Ray workers, one model each "
                                          "(default: the cluster's CPUs / --worker-cpus)"),
    worker_cpus: float = typer.Option(1.0, "--worker-cpus", min=0.01, help="CPUs per Ray worker (also its "
                                      "torch threads unless --threads)"),
) -> None:
    """Stream DATA through MODEL with POLICY in simulated real time; write the log and the scores."""
    from rich.console import Console

    from streamrt.errors import StreamrtError
    from streamrt.evaluation.data import read_data
    from streamrt.evaluation.report import print_table, progress_bar
    from streamrt.evaluation.runner import CLOCKS, evaluate_offline, evaluate_streaming, write_outputs
    from streamrt.presets import get_preset, load_model
    from streamrt.quant.precision import resolve_precision

    console = Console(stderr=True, quiet=quiet)
    if clock not in CLOCKS:
        raise typer.BadParameter(f"--clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    if threads is not None and not use_ray:
        import torch

        torch.set_num_threads(threads)
    policy_options = parse_pairs(policy_opt, "--policy-opt")
    encoder_settings = _typed(parse_pairs(encoder_opt, "--encoder-opt"))
    model_settings = _typed(parse_pairs(setting, "--setting"))
    try:
        read_data(data)  # a missing or empty file fails here, before any model loads
        config = get_preset(preset).with_overrides(
            encoder_mode=encoder, chunk_ms=chunk_ms, policy=policy, policy_options=policy_options,
            encoder_settings=encoder_settings, settings=model_settings, quantize=quantize)
        if not offline:
            from policies import registry

            registry.create(config.policy, dict(config.policy_options))  # unknown policy / bad option: fail before loading
            resolve_precision(config.quantize)  # an unknown scheme, too
        with progress_bar(console, disable=quiet) as progress:
            if use_ray:
                result, settings = _run_on_ray(model, config, offline=offline, task=task, language=language,
                                               data=data, clock=clock, limit=limit, progress=progress,
                                               address=ray_address, workers=workers, worker_cpus=worker_cpus,
                                               threads=threads)
            elif offline:
                from streamrt.models.whisper import load_whisper, transcribe_offline

                bundle = load_whisper(model)

                def transcribe(audio, row):
                    return transcribe_offline(bundle, audio, task=task, language=row.language or language)

                result = evaluate_offline(transcribe, data, clock=CLOCKS[clock](), limit=limit, progress=progress)
                settings: dict[str, Any] = {"model": model, "mode": "offline", "task": task, "language": language}
            else:
                wmodel = load_model(model, config)
                options = {"policy": config.policy, "policy_options": dict(config.policy_options),
                           "task": task, "language": language}
                result = evaluate_streaming(wmodel, data, options=options, feed_ms=config.chunk_ms, limit=limit,
                                            clock=CLOCKS[clock](), progress=progress)
                settings = {**wmodel.describe(), "policy": config.policy, "policy_options": options["policy_options"],
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


def _run_on_ray(model: str, config, *, offline: bool, task: str, language: Optional[str], data: Path, clock: str,
                limit: Optional[int], progress, address: Optional[str], workers: Optional[int], worker_cpus: float,
                threads: Optional[int]):
    """``eval run --ray``: the same rows and outputs, each row run by a Ray worker holding the model."""
    import functools

    from streamrt.evaluation.ray_fanout import RayWorkers, evaluate_on_ray, offline_job, streaming_job
    from streamrt.evaluation.runner import CLOCKS
    from streamrt.presets import load_model

    cluster = RayWorkers(address=address, workers=workers, cpus_per_worker=worker_cpus, threads=threads)
    if offline:
        job = offline_job(model, task=task, language=language, clock=CLOCKS[clock])
    else:
        options = {"policy": config.policy, "policy_options": dict(config.policy_options), "task": task,
                   "language": language}
        job = streaming_job(functools.partial(load_model, model, config), options=options, feed_ms=config.chunk_ms,
                            clock=CLOCKS[clock])
    result, described = evaluate_on_ray(job, data, streaming=not offline, cluster=cluster, limit=limit,
                                        progress=progress)
    settings: dict[str, Any] = {**described, "task": task, "language": language}
    if not offline:
        settings.update(policy=config.policy, policy_options=dict(config.policy_options))
    return result, settings


def sweep(
    data: Path = typer.Option(..., "--data", help="TSV: header, then id<TAB>audio<TAB>reference[<TAB>language]"),
    out: Path = typer.Option(..., "--out", help="output folder: one sub-folder per point, sweep.json/.md/.png"),
    model: str = typer.Option("tiny.en", "--model", help="tiny.en, base, or a local HF Whisper folder"),
    grid: Optional[Path] = typer.Option(None, "--grid", help="YAML grid (see streamrt.evaluation.grid)"),
    policy: Optional[list[str]] = typer.Option(None, "--policy", help="NAME[:k=v,...] (repeat); crossed with "
                                               "--encoder and --chunk-ms"),
    encoder: Optional[list[str]] = typer.Option(None, "--encoder", help="encoder mode (repeat; default reencode)"),
    chunk_ms: Optional[list[int]] = typer.Option(None, "--chunk-ms", help="ms per step (repeat; default 1000)"),
    offline: Optional[bool] = typer.Option(None, "--offline/--no-offline", help="run the offline reference "
                                           "(default: the grid's 'offline', else yes)"),
    setting: Optional[list[str]] = typer.Option(None, "--setting", help="WhisperStreamSettings KEY=VALUE (repeat)"),
    encoder_opt: Optional[list[str]] = typer.Option(None, "--encoder-opt", help="make_encoder KEY=VALUE (repeat)"),
    task: str = typer.Option("transcribe", "--task", help="transcribe or translate"),
    language: Optional[str] = typer.Option(None, "--language", help="source language code (multilingual models)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="only the first N rows"),
    jobs: int = typer.Option(1, "--jobs", min=1, help="points run at once (threads sharing the weights)"),
    resume: bool = typer.Option(False, "--resume", help="reuse points whose scores.json already exists"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: torch's)"),
    clock: str = typer.Option("wall", "--clock", help="compute time for elapsed/RTF: wall, or process (CPU "
                              "seconds of this process; steadier on a shared machine; needs --jobs 1)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Run a grid of policy x options x encoder x chunk (model loaded once); table + latency-quality plot."""
    from rich.console import Console

    from streamrt.errors import StreamrtError
    from streamrt.evaluation.grid import grid_from_cli
    from streamrt.evaluation.data import read_data
    from streamrt.evaluation.runner import CLOCKS
    from streamrt.evaluation.sweep import RichSweepProgress, WhisperPointModels, run_sweep

    console = Console(stderr=True, quiet=quiet)
    if clock not in CLOCKS:
        raise typer.BadParameter(f"--clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    if clock == "process" and jobs > 1:
        raise typer.BadParameter("--clock process counts every thread's CPU time: use it with --jobs 1")
    try:
        read_data(data)  # a missing or empty file fails here, before any model loads
        the_grid = grid_from_cli(grid, policy or [], encoder or [], chunk_ms or [], offline)
        models = WhisperPointModels(
            model, settings={**dict(the_grid.settings), **_typed(parse_pairs(setting, "--setting"))},
            encoder_settings={**dict(the_grid.encoder_settings), **_typed(parse_pairs(encoder_opt, "--encoder-opt"))})
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        models.load()  # weights once, before any point (a load error stops here)
        with RichSweepProgress(console, disable=quiet) as progress:
            summary = run_sweep(the_grid, data, out, models=models, task=task, language=language, limit=limit,
                                jobs=jobs, resume=resume, clock_factory=CLOCKS[clock], progress=progress)
    except StreamrtError as e:
        typer.echo(f"error: {e.message}", err=True)
        raise typer.Exit(2) from None
    typer.echo((out / "sweep.md").read_text())
    typer.echo(f"wrote {out / 'sweep.json'}, {out / 'sweep.md'}, {out / 'sweep.png'}")
    if summary.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `run` and `sweep` to the `eval` group."""
    app.command("run")(run)
    app.command("sweep")(sweep)
