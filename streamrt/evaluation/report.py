"""Terminal output of ``streamrt eval run``: a rich progress bar and a per-utterance table."""

from __future__ import annotations

import contextlib
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streamrt.evaluation.runner import EvalResult, utterance_rows


@contextlib.contextmanager
def progress_bar(console: Console, *, disable: bool = False) -> Iterator:
    """Yields a ``progress(id, done, total)`` callback drawing one bar."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[current]}"), console=console, disable=disable, transient=False,
    ) as bar:
        task = bar.add_task("utterances", total=None, current="")

        def update(uid: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, current=uid)

        yield update


def print_table(console: Console, result: EvalResult, *, max_text: int = 60) -> None:
    table = Table(title="per utterance", show_lines=False)
    for col in ("id", "audio_s", "WER", "LAAL_ms", "RTF", "prediction"):
        table.add_column(col, overflow="fold" if col == "prediction" else "ellipsis")
    for r in utterance_rows(result):
        text = r["prediction"] if len(r["prediction"]) <= max_text else r["prediction"][: max_text - 1] + "…"
        table.add_row(r["id"], f"{r['audio_s']:.2f}", _fmt(r["WER"]), _fmt(r["LAAL_ms"]), f"{r['RTF']:.3f}", text)
    console.print(table)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:g}"
