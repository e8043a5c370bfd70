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


def random_long_form(rng: random.Random, n_recordings: int, unit: str = "word"):
    """(segment entries, reference lines, log records) for a long-form test: each recording has
    a few reference segments; its output is a noisy copy of the references (dropped, changed,
    extra words; sometimes nothing) emitted over the recording's time, with cumulative elapsed."""
    entries, references, records = [], [], []
    for r in range(n_recordings):
        wav = f"/data/talk{r}.wav"
        t = rng.uniform(0, 3)
        hyp_words, hyp_times = [], []
        for _ in range(rng.randint(1, 5)):
            gap = rng.choice([0.0, rng.uniform(0, 2)])
            duration = round(rng.uniform(0.5, 6), rng.choice([1, 2, 3]))
            offset = round(t + gap, 3)
            ref = random_text(rng, rng.choice([1, rng.randint(2, 12)]))
            entries.append({"wav": wav, "offset": offset, "duration": duration, "speaker_id": "spk"})
            references.append(ref)
            for w in ref.split():
                roll = rng.random()
                if roll < 0.15:
                    continue
                word = rng.choice(VOCAB) if roll < 0.3 else w.lower() if roll < 0.4 else w
                when = (offset + rng.uniform(0, duration * 1.5)) * 1000
                hyp_words.append(word)
                hyp_times.append(when)
                if rng.random() < 0.1:
                    hyp_words.append(rng.choice(VOCAB))
                    hyp_times.append(when + rng.uniform(0, 400))
            t = offset + duration
        if rng.random() < 0.05:
            hyp_words, hyp_times = [], []
        end = t * 1000
        delays = sorted(min(x, end) if rng.random() < 0.9 else x for x in hyp_times)
        delays = [float(int(d)) if rng.random() < 0.2 else d for d in delays]
        delays = sorted(delays)
        if unit == "char":
            prediction = "".join(hyp_words)
            delays = [d for w, d in zip(hyp_words, delays) for _ in w]
        else:
            prediction = " ".join(hyp_words)
        elapsed, spent = [], 0.0
        for i, d in enumerate(delays):
            if i == 0 or d != delays[i - 1] or rng.random() < 0.3:
                spent += rng.uniform(0, 200)
            elapsed.append(d + spent if rng.random() > 0.1 or not elapsed else max(elapsed[-1], d))
        records.append({
            "index": r, "prediction": prediction, "delays": delays, "elapsed": elapsed,
            "prediction_length": len(delays), "reference": None,
            "source": [wav, "samplerate: 16000 Hz"], "source_length": end,
        })
    return entries, references, records
