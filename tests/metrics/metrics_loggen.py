"""Random SimulEval-style logs for the agreement tests (deterministic per seed)."""

from __future__ import annotations

import random

VOCAB = ["the", "a", "cat", "sat", "on", "mat", "hello", "world", "it's", "fine", "we", "go",
         "Today,", "talk.", "about", "speech", "?", ",", "data", "model", "très", "bien"]


def random_text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def random_times(rng: random.Random, n: int, source_length: float, integer: bool) -> tuple[list, list]:
    """Non-decreasing delays (often repeated, sometimes past the source end) and elapsed =
    delay + cumulative compute, as SimulEval records them."""
    delays, elapsed = [], []
    d = rng.choice([0.0, rng.uniform(0, source_length * 1.2)])
    spent = 0.0
    for _ in range(n):
        if rng.random() < 0.6:
            d += rng.choice([0, rng.uniform(0, source_length / 3)])
        if rng.random() < 0.15:
            d = max(d, source_length + rng.choice([0, rng.uniform(0, 500)]))
        if integer:
            d = float(int(d))
        if rng.random() < 0.7:
            spent += rng.uniform(0, 300)
        delays.append(d)
        elapsed.append(d + spent if rng.random() > 0.05 else d)
    return delays, elapsed


def random_record(rng: random.Random, index: int, unit: str = "word") -> dict:
    """One instances.log object: empty predictions, one-word references, over-generation,
    first delay at/after the source end and spaces in references all occur."""
    source_length = rng.choice([rng.uniform(300, 8000), float(rng.randint(1, 40) * 320)])
    ref_words = rng.choice([1, 1, 2, rng.randint(3, 25)])
    reference = random_text(rng, ref_words)
    if rng.random() < 0.1:
        reference = "  " + reference.replace(" ", "  ", 1) + " "
    n_pred = rng.choice([0, 1, max(0, ref_words + rng.randint(-3, 3)), ref_words * 2 + rng.randint(0, 5)])
    if unit == "char":
        prediction = random_text(rng, max(1, n_pred // 3)).replace(" ", "") if n_pred else ""
        n_units = len(prediction)
    else:
        prediction = random_text(rng, n_pred)
        n_units = len(prediction.split())
    delays, elapsed = random_times(rng, n_units, source_length, integer=rng.random() < 0.3)
    if rng.random() < 0.05:
        elapsed = [0] * len(delays)
    return {
        "index": index,
        "prediction": prediction,
        "delays": delays,
        "elapsed": elapsed,
        "prediction_length": n_units,
        "reference": reference,
        "source": [f"rec{index}.wav", "samplerate: 16000 Hz"],
        "source_length": source_length,
    }
