"""CLI: ``streamrt policies`` lists the installed read/write policies and their options;
``streamrt presets`` the named configurations (``streamrt.presets``) and what this CPU's ``auto`` picks."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    app.command("policies")(policies)
    app.command("presets")(presets)


def presets(
    format: str = typer.Option("table", "--format", help="table or json"),
) -> None:
    """List the named configurations (--preset of serve, eval run, bench streams); the default is marked."""
    from streamrt.presets import DEFAULT_PRESET, PRESETS
    from streamrt.quant.precision import resolve_precision

    rows = [{**p.describe(), "default": name == DEFAULT_PRESET} for name, p in PRESETS.items()]
    auto = resolve_precision("auto")
    if format == "json":
        typer.echo(json.dumps({"presets": rows, "auto_precision": auto.describe()}, indent=2))
        return
    if format != "table":
        typer.echo(f"error: --format must be table or json, got {format!r}", err=True)
        raise typer.Exit(2)
    from rich.console import Console
    from rich.table import Table

    table = Table(title="streamrt presets (measured WER, latency and capacity: docs/benchmarks.md)")
    for col in ("name", "encoder", "step", "policy", "precision"):
        table.add_column(col)
    for r in rows:
        opts = ", ".join(f"{k}={v}" for k, v in r["policy_options"].items())
        table.add_row(r["name"] + (" (default)" if r["default"] else ""), r["encoder_mode"], f"{r['chunk_ms']} ms",
                      f"{r['policy']} {opts}".strip(), r["quantize"])
    console = Console()
    console.print(table)
    for r in rows:
        console.print(f"[bold]{r['name']}[/]: {r['summary']}", highlight=False)
    console.print(f"precision auto on this CPU: {auto.reason}", highlight=False)


def policies(
    format: str = typer.Option("table", "--format", help="table or json"),
) -> None:
    """List installed read/write policies (built-in and entry-point group streamrt.policies)."""
    from policies import registry
    from streamrt.errors import StreamrtError

    rows = []
    for name, target in registry.available().items():
        try:
            cls = registry.load(name)
            opts = {k: {"type": t.__name__, "default": d, "help": h} for k, (t, d, h) in cls.options.items()}
            rows.append({"name": name, "target": target, "options": opts, "doc": (cls.__doc__ or "").strip()})
        except StreamrtError as e:
            rows.append({"name": name, "target": target, "error": e.message})
    if format == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    if format != "table":
        typer.echo(f"error: --format must be table or json, got {format!r}", err=True)
        raise typer.Exit(2)
    from rich.console import Console
    from rich.table import Table

    table = Table(title="streamrt policies")
    table.add_column("name")
    table.add_column("options (default)")
    table.add_column("class")
    for r in rows:
        opts = r.get("error") or ", ".join(f"{k}={v['default']}" for k, v in r["options"].items())
        table.add_row(r["name"], opts, r["target"])
    Console().print(table)
