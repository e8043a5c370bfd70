"""StreamAtt's history selection (Papi et al. 2024) applied by the Whisper task on a real recording:
the encoder window and the textual context stay bounded while the transcript stays right."""

import csv
from pathlib import Path

import pytest

pytestmark = [pytest.mark.model, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]


def _two_cities_first_seconds(seconds: float):
    from streamrt.audio import load_audio

    with open(ROOT / "data" / "real.tsv", newline="") as f:
        rows = {r["id"]: r for r in csv.DictReader(f, delimiter="\t")}
    audio = load_audio(ROOT / "data" / rows["two_cities"]["audio"])
    return audio[: int(seconds * 16000)], rows["two_cities"]["reference"]


def test_streamatt_keeps_window_and_text_history_bounded():
    from metrics.quality import wer
    from streamrt.clock import ManualClock
    from streamrt.evaluation.runner import stream_one
    from streamrt.tasks.whisper_stream import WhisperStreamingModel

    audio, reference = _two_cities_first_seconds(16.0)
    model = WhisperStreamingModel.from_pretrained("tiny.en", encoder_mode="reencode", chunk_ms=1000)
    opts = {"policy": "streamatt", "policy_options": {"history_words": 6, "max_history_ms": 8000, "frames": 4}}
    session = stream_one(model, audio, opts, feed_ms=1000, clock=ManualClock())
    stream = session.stream
    words = [u.text for u in session.committed]
    # the recording's first 16 s hold roughly the first 36 words of the paragraph
    expected = " ".join(reference.split()[: len(words)])
    assert wer([" ".join(words)], [expected]) <= 15.0, " ".join(words)
    assert stream.stats["trims"] >= 2  # history selection cut the audio more than once
    assert stream.window_start_ms >= 16000 - 8000 - 1000  # never more than max_history_ms (+1 chunk) kept
    prompt_words = model.bundle.tokenizer.decode(stream.prompt).split()
    assert len(prompt_words) <= 6
