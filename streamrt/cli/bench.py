"""CLI commands under ``streamrt bench`` (registered by streamrt.cli). Benchmarks print figures; they are
never timed tests. Each benchmark is one ``_register_*`` function listed in ``BENCHMARKS``; add yours there."""

from __future__ import annotations

import json
from typing import Callable

import typer


def _register_encoder(app: typer.Typer) -> None:
    @app.command("encoder")
    def encoder(
        model: str = typer.Option("tiny.en", help="tiny.en (packaged weights; random if missing) or random"),
        format: str = typer.Option("table", "--format", help="table or json"),
        positions: str = typer.Option("10,20,60,600", help="stream positions in seconds, comma-separated"),
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
        from streamrt.bench.encoder import BenchSettings, format_table, run_encoder_bench, to_json

        if format not in ("table", "json"):
            raise typer.BadParameter(f"--format must be table or json, not {format!r}")
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
        else:
            typer.echo(format_table(described, results, s))


BENCHMARKS: list[Callable[[typer.Typer], None]] = [_register_encoder]


def register(app: typer.Typer) -> None:
    """Add every benchmark in ``BENCHMARKS`` to the ``bench`` sub-app."""
    for add in BENCHMARKS:
        add(app)
