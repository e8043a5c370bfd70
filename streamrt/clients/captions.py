"""Live captions in a terminal (rich): committed words stay, the partial is shown dimmed after them.

``CaptionView`` is an ``on_message`` callback for the protocol client. On a terminal it redraws one
live block; elsewhere (pipes, tests) it prints each commit as a line, so the output stays readable.
"""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text


class CaptionView:
    def __init__(self, console: Console | None = None, *, live: bool | None = None, max_chars: int = 600):
        self.console = console or Console()
        self.live = self.console.is_terminal if live is None else live
        self.max_chars = max_chars
        self.committed: list[str] = []
        self.partial = ""
        self.errors: list[dict] = []
        self._live: Live | None = None

    def __enter__(self) -> "CaptionView":
        if self.live:
            self._live = Live(self._render(), console=self.console, refresh_per_second=20, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)
            self._live = None

    def __call__(self, msg: dict) -> None:
        kind = msg.get("type")
        if kind == "ready":
            self.console.print(f"[green]session {msg['session_id']}[/] ready ({msg.get('model') or 'model'}, "
                               f"{msg['sample_rate']} Hz {msg['encoding']})")
        elif kind == "partial":
            self.partial = msg["text"]
        elif kind == "commit":
            words = [w["text"] for w in msg["words"]]
            self.committed.extend(words)
            self.partial = ""
            if not self.live:
                delays = ", ".join(f"{w['media_delay_ms'] - w['end_ms']:.0f}" for w in msg["words"])
                self.console.print(f"[bold]{' '.join(words)}[/]  [dim](lag ms: {delays})[/]", highlight=False)
        elif kind == "error":
            self.errors.append(msg)
            self.console.print(f"[red]error {msg['code']}[/]: {msg['message']}", highlight=False)
        elif kind == "end":
            self.partial = ""
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Text:
        text = Text(" ".join(self.committed)[-self.max_chars :], style="bold")
        if self.partial:
            text.append(" " + self.partial, style="dim italic")
        return text


def summary_table(end: dict) -> Table:
    """The session's latency summary (the ``end`` message) as a table."""
    table = Table(title=f"session {end.get('session_id', '')}: {end.get('words', 0)} words", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in (end.get("summary") or {}).items():
        table.add_row(key, "-" if value is None else f"{value}")
    table.caption = "commit lag: media consumed when a word was committed minus the word's end (ms); rtf: compute / audio"
    return table
