"""``streamrt bench tts``: how fast the agent's voice is made (hibari through ``TtsModel``).

One turn is a fixed five-sentence answer fed at once and spoken chunk by chunk, as the scheduler
steps it: the first chunk's wall time (what the user waits for after the LLM's first clause), the
whole turn's synthesis time and its x real time (seconds of audio per second of compute). Runs are
repeated and the median reported; ``streams`` turns stepped together show the cost of one step over
several streams (hibari's graph takes one utterance per forward, so it grows with them).
"""

from __future__ import annotations

import statistics
import time

from streamrt.tasks.tts import TtsModel, TtsSettings
from streamrt.types import TextDelta

ANSWER = ("Sure, the weather today looks sunny and warm. You should bring some water with you. Have a nice "
          "walk in the park. Paris is the capital of France, and it is known for the Eiffel Tower. Would you "
          "like to know more about it?")


def _turn(model: TtsModel, streams: int) -> tuple[float, float, float]:
    """(first step's seconds, all steps' seconds, seconds of audio) for ``streams`` turns at once."""
    turns = [model.create_stream() for _ in range(streams)]
    for s in turns:
        s.accept(TextDelta(ANSWER, end_of_turn=True))
    first = None
    t0 = time.perf_counter()
    while any(s.is_ready() for s in turns):
        model.step([s for s in turns if s.is_ready()])
        if first is None:
            first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    audio = sum(len(r.audio) for r in (s.pop_result() for s in turns) if r.audio is not None) / model.sample_rate
    return first, total, audio


def run_tts_bench(threads: int = 1, repeats: int = 5, streams: int = 4) -> dict:
    from streamrt.models.tts import load_tts

    model = TtsModel(load_tts("hibari", threads=threads), TtsSettings(seed=0))
    out: dict = {"tts": model.describe(), "text_chars": len(ANSWER), "repeats": repeats}
    for n in (1, streams):
        runs = [_turn(model, n) for _ in range(repeats)]
        first = statistics.median(r[0] for r in runs)
        total = statistics.median(r[1] for r in runs)
        audio = runs[0][2]
        out[f"streams_{n}"] = {"first_step_ms": round(1000 * first, 1), "turn_s": round(total, 3),
                               "audio_s": round(audio, 2), "x_realtime": round(audio / total, 1)}
    return out


def register(app) -> None:
    import json

    import typer

    @app.command("tts")
    def tts(
        threads: int = typer.Option(1, min=1, help="onnxruntime threads"),
        repeats: int = typer.Option(5, min=1, help="runs per figure (the median is reported)"),
        streams: int = typer.Option(4, min=2, help="turns stepped together for the second figure"),
    ) -> None:
        """The agent's TTS: first-chunk time, synthesis time and x real time of a five-sentence turn."""
        typer.echo(json.dumps(run_tts_bench(threads, repeats, streams)))
