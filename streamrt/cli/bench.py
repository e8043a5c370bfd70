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


def _encoder_section() -> str:
    from streamrt.bench.encoder import BenchSettings, markdown_section, run_encoder_bench

    s = BenchSettings()
    return markdown_section(*run_encoder_bench(s), s)


BENCHMARKS: list[Callable[[typer.Typer], None]] = [_register_encoder]
# ``bench all`` writes one section per entry: (section title in docs/benchmarks.md, () -> markdown body)
SECTIONS: list[tuple[str, Callable[[], str]]] = [("Encoder step cost", _encoder_section)]


def replace_section(text: str, title: str, body: str) -> str:
    """``text`` with the body of ``## title`` replaced (the section is appended if missing)."""
    lines = text.splitlines()
    head = f"## {title}"
    if head not in lines:
        return text.rstrip("\n") + f"\n\n{head}\n\n{body.strip()}\n"
    i = lines.index(head)
    j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
    rest = "\n".join(lines[j:])
    return "\n".join(lines[: i + 1]) + f"\n\n{body.strip()}\n" + (f"\n{rest}\n" if rest else "")


def _register_all(app: typer.Typer) -> None:
    @app.command("all")
    def run_all(
        out: str = typer.Option("", help="markdown file whose sections are rewritten (empty: print)"),
    ) -> None:
        """Run every benchmark; rewrite its section of --out (e.g. docs/benchmarks.md) or print it."""
        from pathlib import Path

        path = Path(out) if out else None
        text = path.read_text(encoding="utf-8") if path and path.exists() else "# Benchmarks\n"
        for title, make in SECTIONS:
            body = make()
            if path is None:
                typer.echo(f"## {title}\n\n{body}\n")
            text = replace_section(text, title, body)
        if path is not None:
            path.write_text(text, encoding="utf-8")
            typer.echo(f"wrote {', '.join(t for t, _ in SECTIONS)} to {path}")


def register(app: typer.Typer) -> None:
    """Add every benchmark in ``BENCHMARKS`` to the ``bench`` sub-app, and ``bench all``."""
    for add in BENCHMARKS:
        add(app)
    _register_all(app)
