"""Beam search with the packaged tiny.en weights: the accurate preset with beam_size 5 streams a clip
of data/testset.tsv to its reference."""

from pathlib import Path

import pytest

pytestmark = [pytest.mark.model, pytest.mark.slow]

DATA = Path(__file__).resolve().parents[3] / "data"


def test_tiny_en_with_five_beams_streams_a_test_clip_to_its_reference():
    from metrics.quality import wer
    from streamrt.audio import load_audio
    from streamrt.clock import ManualClock
    from streamrt.evaluation.runner import stream_one
    from streamrt.presets import get_preset, load_model

    rows = [line.split("\t") for line in (DATA / "testset.tsv").read_text().splitlines()[1:]]
    clip, reference = next((r[1], r[2]) for r in rows if r[0] == "en00_slt")
    model = load_model("tiny.en", get_preset("accurate").with_overrides(settings={"beam_size": 5}))
    session = stream_one(model, load_audio(DATA / clip), {}, feed_ms=500, clock=ManualClock())
    text = " ".join(u.text for u in session.committed)
    assert wer([text], [reference]) == 0.0, text
