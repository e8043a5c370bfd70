"""The ``streamrt`` command. Each sub-module registers its own commands; heavy imports stay inside them."""

from __future__ import annotations

import typer

from streamrt.cli import bench, chat, dialogue, eval_run, eval_score, policies_cmd, serve

app = typer.Typer(
    name="streamrt",
    help="Real-time streaming speech: serve, stream, evaluate and benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
eval_app = typer.Typer(help="Offline latency-quality evaluation.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print figures (never timed tests).", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")

eval_score.register(eval_app)
eval_run.register(eval_app)
bench.register(bench_app)
serve.register(app)
policies_cmd.register(app)
chat.register(app)
dialogue.register(app)


def main() -> None:
    from streamrt.allocator import keep_freed_memory

    keep_freed_memory()  # batched steps reuse freed memory instead of page-faulting it in again
    app()
