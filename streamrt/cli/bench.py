"""CLI commands under ``streamrt bench`` (registered by streamrt.cli). Benchmarks print figures; they are
never timed tests. Each benchmark is one ``_register_*`` function listed in ``BENCHMARKS``; add yours there."""

from __future__ import annotations

import json
from typing import Callable

import typer

from streamrt.presets import PRESETS


def _register_encoder(app: typer.Typer) -> None:
    @app.command("encoder")
    def encoder(
        model: str = typer.Option("tiny.en", help="tiny.en (packaged weights; random if missing) or random"),
        format: str = typer.Option("table", "--format", help="table, json, or markdown (a docs/benchmarks.md section)"),
        positions: str = typer.Option("10,25,60,600", help="stream positions in seconds, comma-separated"),
        chunk_ms: float = typer.Option(500.0, help="audio per timed step (ms)"),
        repeats: int = typer.Option(9, help="timed steps per position (best and median reported)"),
        keep_s: float = typer.Option(10.0, help="window kept when a trim is needed (s)"),
        left_s: float = typer.Option(10.0, help="left context of the cached attention modes (s)"),
        threads: int = typer.Option(1, help="torch threads"),
        modes: str = typer.Option(
            "block-causal,sliding,conformer,reencode,reencode-30s", help="modes to time, comma-separated"
        ),
    ) -> None:
        """Time one chunk step of every encoder mode at several stream positions."""
        from streamrt.bench.encoder import BenchSettings, format_table, markdown_section, run_encoder_bench, to_json

        if format not in ("table", "json", "markdown"):
            raise typer.BadParameter(f"--format must be table, json or markdown, not {format!r}")
        try:
            pos = tuple(float(p) for p in positions.split(","))
        except ValueError:
            raise typer.BadParameter(f"--positions must be numbers separated by commas, not {positions!r}")
        s = BenchSettings(
            model=model, positions_s=pos, chunk_ms=chunk_ms, repeats=repeats, keep_s=keep_s, left_s=left_s,
            threads=threads, modes=tuple(m.strip() for m in modes.split(",")),
        )  # fmt: skip
        described, results = run_encoder_bench(s)
        if format == "json":
            typer.echo(json.dumps(to_json(described, results, s), indent=2))
        elif format == "markdown":
            typer.echo(markdown_section(described, results, s))
        else:
            typer.echo(format_table(described, results, s))


def _register_streams(app: typer.Typer) -> None:
    from streamrt.bench import streams

    streams.register(app)


def _register_soak(app: typer.Typer) -> None:
    from streamrt.bench import soak

    soak.register(app)


def _register_quant(app: typer.Typer) -> None:
    from streamrt.bench import quant

    quant.register(app)


def _register_llm(app: typer.Typer) -> None:
    from streamrt.bench import llm, llm_beside_asr, llm_quality

    llm.register(app)
    llm_quality.register(app)
    llm_beside_asr.register(app)


def _register_lips(app: typer.Typer) -> None:
    from streamrt.bench import lips

    lips.register(app)


def _register_tts(app: typer.Typer) -> None:
    from streamrt.bench import tts

    tts.register(app)


def _register_quant_wer(app: typer.Typer) -> None:
    @app.command("quant-wer")
    def quant_wer_cmd(
        data: str = typer.Option("data/testset.tsv", help="data TSV (id, audio, reference)"),
        model: str = typer.Option("tiny.en", help="Whisper name or path"),
        encoder_mode: str = typer.Option("block-causal", help="block-causal | sliding | reencode"),
        chunk_ms: int = typer.Option(1000, help="audio per model step (ms)"),
        policy: str = typer.Option("local-agreement", help="read/write policy"),
        variants: str = typer.Option("", help="comma-separated variant labels (default: all)"),
        limit: int = typer.Option(None, help="first N rows only"),
        threads: int = typer.Option(1, help="torch threads in this process"),
    ) -> None:
        """WER and latency of every quantized variant (fp32, int8, int4, bf16, FlexiQ 0..100 %), one JSON line each."""
        import torch

        from streamrt.bench.quant_wer import variant_wer

        torch.set_num_threads(threads)
        rows = variant_wer(data, model_name=model, encoder_mode=encoder_mode, chunk_ms=chunk_ms, policy=policy,
                           labels=[v for v in variants.split(",") if v] or None, limit=limit)
        for row in rows:
            typer.echo(json.dumps(row))


# the capacity configurations are named presets (streamrt/presets.py), run as served: precision
# "auto" (bf16 only where the CPU has it natively), the default preset when no --preset is given
_LOW_LATENCY = ["--preset", "low-latency"]
_LOW_LATENCY_1S = [*_LOW_LATENCY, "--model-chunk-ms", "1000"]
_SWEEP = ["--threads", "2", "--max-wait-ms", "150", "--no-degrade", "--format", "json"]

# What `streamrt bench all` (and `make bench`) runs: (output file, arguments after `streamrt`).
ALL_RUNS: list[tuple[str, list[str]]] = [
    ("encoder.json", ["bench", "encoder", "--format", "json"]),
    ("tts.json", ["bench", "tts"]),  # the agent's voice: first chunk and x real time (docs/benchmarks.md "TTS")
    ("quant.md", ["bench", "quant", "--format", "table"]),
    # the server's memory under 30,000 short sessions (docs/operations.md "Memory over time")
    ("soak.jsonl", ["bench", "soak", "--sessions", "30000", "--report-every", "3000"]),
    # capacity (docs/benchmarks.md "Streams per machine"), each configuration as set (--no-degrade:
    # no trial is rescued by the ladder lengthening its chunks): the default preset (no configuration
    # flags: what `streamrt serve` serves) and the low-latency preset at 500 ms, swept for p95 commit
    # delay <= 1.5 s, then low-latency held to real time only ...
    ("streams-sweep-default.json", ["bench", "streams", "--model", "tiny.en", "--sweep", "--streams", "8",
                                    "--duration", "30", *_SWEEP]),
    ("streams-sweep.json", ["bench", "streams", "--model", "tiny.en", "--sweep", "--streams", "8",
                            "--duration", "30", *_LOW_LATENCY, *_SWEEP]),
    ("streams-realtime.json", ["bench", "streams", "--model", "tiny.en", "--sweep", "--streams", "16",
                               "--duration", "30", *_LOW_LATENCY, "--p95-limit-ms", "1000000", *_SWEEP]),
    # ... the same at 1 s steps, whisper_streaming's chunk size (commits later, fewer decodes per
    # second of audio), held to real time only ...
    ("streams-realtime-1s.json", ["bench", "streams", "--model", "tiny.en", "--sweep", "--streams", "20",
                                  "--max-streams", "64", "--duration", "30", *_LOW_LATENCY_1S,
                                  "--p95-limit-ms", "1000000", *_SWEEP]),
    # ... and whisper_streaming's method (re-encode + LocalAgreement-2, 1 s chunks, its preset), held
    # to real time only (its p95 is above 1.5 s at 1 stream)
    ("streams-whisper_streaming.json", ["bench", "streams", "--model", "tiny.en", "--sweep", "--streams", "2",
                                        "--duration", "30", "--preset", "whisper-streaming",
                                        "--p95-limit-ms", "1000000", *_SWEEP]),
    # the degradation ladder under a load spike: 20 low-latency-preset streams for 50 s, 20 more
    # from 10 s to 40 s (past what 500 ms steps hold, within what 1 s steps hold), with the ladder
    # and without it
    *[(name, ["bench", "streams", "--model", "tiny.en", "--streams", "20", "--duration", "50", "--spike-at", "10",
              "--spike-duration", "30", *_LOW_LATENCY, "--threads", "2", "--max-wait-ms", "150", *extra,
              "--format", "json"])
      for name, extra in (("streams-spike.json", []), ("streams-spike-no-degrade.json", ["--no-degrade"]))],
    ("quant-wer.jsonl", ["bench", "quant-wer", "--data", "data/testset.tsv", "--threads", "1"]),
    # the LLM beside llama.cpp on the same GGUF (docs/benchmarks.md "LLM"), and its quality per scheme
    ("llm.json", ["bench", "llm", "--format", "json"]),
    ("llm-quality.jsonl", ["bench", "llm-quality"]),
    # the LLM beside live Whisper streams on one scheduler (docs/benchmarks.md "LLM beside Whisper")
    ("llm-beside-asr.json", ["bench", "llm-beside-asr", "--streams", "8", "--chats", "4", "--preset", "balanced",
                             "--duration", "60"]),
    # lip activity on the animated astronaut (docs/benchmarks.md "Lip activity"), even and uneven frame times
    ("lips.json", ["bench", "lips"]),
    ("lips-jitter.json", ["bench", "lips", "--jitter-ms", "20"]),
    # issue 20's capacity with cameras (docs/benchmarks.md "Captioning streams with cameras,
    # measured"): the default preset's sweep with a camera on every session at 15 and 30 fps (the
    # ranges bracket the estimates), and the cameras alone through a real scheduler
    *[(f"streams-video-{fps}.json", ["bench", "streams", "--model", "tiny.en", "--sweep", "--streams", start,
                                     "--max-streams", top, "--duration", "30", "--video-fps", fps, *_SWEEP])
      for fps, start, top in (("15", "8", "19"), ("30", "6", "13"))],
    ("lips-realtime.json", ["bench", "lips", "--realtime", "4,8,10,12"]),
    # the voice agent's turn-taking and latency on the scripted dialogues (docs/benchmarks.md "Voice
    # agent"), with each turn-taking policy
    *[(f"dialogue-{policy}", ["dialogue", "eval", "--turn-policy", policy, "--threads", "1", "--quiet"])
      for policy in ("silence", "semantic")],
    ("sweep", ["eval", "sweep", "--data", "data/testset.tsv", "--model", "tiny.en", "--threads", "1",
               "--grid", "docs/bench/sweep_tiny_en.yaml", "--clock", "process", "--resume", "--quiet"]),
    # every preset's WER and latency, as served (docs/benchmarks.md "Presets"), on both data sets
    *[(f"eval-{preset}-{data}", ["eval", "run", "--data", f"data/{data}.tsv", "--model", "tiny.en", "--preset", preset,
                                 "--threads", "1", "--clock", "process", "--quiet"])
      for preset in PRESETS for data in ("testset", "real")],
]


def _register_all(app: typer.Typer) -> None:
    @app.command("all")
    def all_benchmarks(
        out: str = typer.Option("runs/bench", "--out", help="folder for every benchmark's output"),
        only: str = typer.Option("", "--only", help="comma-separated output names to run (default: all)"),
    ) -> None:
        """Run every benchmark, each in its own process, writing OUT/<name>; curated figures go to
        docs/benchmarks.md by hand (the raw outputs say which command made them)."""
        import subprocess
        import sys
        from pathlib import Path

        root = Path(out)
        root.mkdir(parents=True, exist_ok=True)
        wanted = {w.strip() for w in only.split(",") if w.strip()}
        failed = []
        for name, args in ALL_RUNS:
            if wanted and name not in wanted:
                continue
            target = root / name
            writes_folder = args[0] in ("eval", "dialogue")  # eval run / sweep / dialogue eval write a folder
            if writes_folder:
                args = [*args, "--out", str(target)]
            cmd = [sys.executable, "-m", "streamrt", *args]
            typer.echo(f"$ streamrt {' '.join(args)}", err=True)
            result = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
            if not writes_folder:
                target.write_text(result.stdout)
            typer.echo(f"  -> {target} (exit {result.returncode})", err=True)
            if result.returncode:
                failed.append(name)
        if failed:
            typer.echo(f"failed: {', '.join(failed)}", err=True)
            raise typer.Exit(1)


BENCHMARKS: list[Callable[[typer.Typer], None]] = [
    _register_encoder, _register_streams, _register_soak, _register_quant, _register_quant_wer, _register_llm,
    _register_lips, _register_tts, _register_all,
]


def register(app: typer.Typer) -> None:
    """Add every benchmark in ``BENCHMARKS`` to the ``bench`` sub-app."""
    for add in BENCHMARKS:
        add(app)
