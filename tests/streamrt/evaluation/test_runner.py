"""The evaluation runner on the counting model (no weights): simulated real-time streaming, the
SimulEval log, scores, and row errors that do not stop the run."""

import json

import numpy as np
import pytest
import soundfile as sf

from metrics import read_instances
from streamrt.clock import ManualClock
from streamrt.evaluation import evaluate_offline, evaluate_streaming, read_data
from streamrt.evaluation.runner import write_outputs
from streamrt.testing import CountingModel


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    for name, seconds in (("a", 2.0), ("b", 1.5)):
        sf.write(tmp_path / f"{name}.wav", rng.uniform(-0.1, 0.1, int(16000 * seconds)).astype(np.float32), 16000)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    lines = [
        "id\taudio\treference",
        "u1\ta.wav\tw0 w1 w2 w3",
        "u2\tb.wav\tw0 w1 w9",
        "u3\tmissing.wav\tx",
        "u4\tbad.wav\tx",
        "u5\tonly-two-columns",
    ]
    (tmp_path / "data.tsv").write_text("\n".join(lines) + "\n")
    return tmp_path / "data.tsv"


def test_read_data_names_bad_rows(dataset):
    rows, errors = read_data(dataset)
    assert [r.id for r in rows] == ["u1", "u2", "u3", "u4"]
    assert rows[0].audio == dataset.parent / "a.wav"
    assert len(errors) == 1 and errors[0].row == 6 and "3 or 4" in errors[0].message


def test_streaming_run_scores_and_logs(dataset, tmp_path):
    model = CountingModel(word_ms=500, chunk_ms=200, hold_ms=300)
    result = evaluate_streaming(model, dataset, options={}, feed_ms=200, clock=ManualClock())
    assert [u.id for u in result.utterances] == ["u1", "u2"]
    # unreadable and missing audio are reported with their row; the rest ran
    assert any(":4:" in e and "missing.wav" in e for e in result.errors)
    assert any(":5:" in e and "bad.wav" in e for e in result.errors)
    assert any(":6:" in e for e in result.errors)
    u1 = result.utterances[0]
    assert u1.prediction == "w0 w1 w2 w3"
    # word i ends at (i+1)*500 ms and is committed 300 ms later, at a 200 ms step boundary
    assert u1.delays == [800.0, 1400.0, 1800.0, 2000.0]
    assert u1.elapsed == u1.delays  # the manual clock never moves: no compute time
    s = result.scores
    assert s["WER_raw"] == pytest.approx(100 * 1 / 7, abs=0.01)  # u2 has w2 for w9
    assert 0 < s["WER"] < s["WER_raw"]  # the English normaliser splits "w9" into two tokens
    assert s["LAAL"] > 0 and s["LAAL"] == s["LAAL_CA"] and s["RTF"] == 0.0
    path = write_outputs(tmp_path / "out", result, {"policy": "counting"})
    doc = json.loads(path.read_text())
    assert doc["WER"] == s["WER"] and doc["settings"]["policy"] == "counting"
    assert [r["id"] for r in doc["utterances"]] == ["u1", "u2"] and len(doc["errors"]) == 3
    logged = read_instances(tmp_path / "out" / "instances.log")
    assert logged[0].delays == (800.0, 1400.0, 1800.0, 2000.0) and logged[0].reference == "w0 w1 w2 w3"


def test_offline_run_delays_every_word_to_the_end(dataset):
    result = evaluate_offline(lambda audio, row: "w0 w1 w2 w3", dataset)
    u1 = result.utterances[0]
    assert u1.delays == [2000.0] * 4
    assert all(e >= 2000.0 for e in u1.elapsed)
    assert result.scores["mode"] == "offline"
