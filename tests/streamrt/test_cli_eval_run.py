import json

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from streamrt.cli import app
from streamrt.testing import CountingModel


class _Counting(CountingModel):
    def describe(self):
        return {"model": "counting", "chunk_ms": self.chunk_ms}


def test_eval_run_writes_log_and_scores(tmp_path, monkeypatch):
    from streamrt.tasks import whisper_stream

    seen = {}

    def fake_from_pretrained(name, **kw):
        seen.update(kw, name=name)
        return _Counting(word_ms=500, chunk_ms=kw["chunk_ms"])

    monkeypatch.setattr(whisper_stream.WhisperStreamingModel, "from_pretrained", staticmethod(fake_from_pretrained))
    sf.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    (tmp_path / "d.tsv").write_text("id\taudio\treference\nu1\ta.wav\tw0 w1\nu2\tnope.wav\tx\n")
    out = CliRunner().invoke(app, [
        "eval", "run", "--data", str(tmp_path / "d.tsv"), "--out", str(tmp_path / "o"), "--policy", "alignatt",
        "--policy-opt", "frames=6", "--encoder", "block-causal", "--chunk-ms", "250", "--setting", "reuse_prefix_kv=false",
        "--quantize", "bf16", "--quiet",
    ])
    assert out.exit_code == 0, out.output
    assert seen["encoder_mode"] == "block-causal" and seen["reuse_prefix_kv"] is False and seen["chunk_ms"] == 250
    assert seen["quantize"] == "bf16"
    doc = json.loads((tmp_path / "o" / "scores.json").read_text())
    assert doc["WER_raw"] == 0.0 and doc["n_utterances"] == 1
    assert doc["settings"]["policy_options"] == {"frames": "6"}
    assert len(doc["errors"]) == 1 and ":3:" in doc["errors"][0]
    assert (tmp_path / "o" / "instances.log").read_text().count("\n") == 1


def test_eval_run_missing_data_is_a_clear_error(tmp_path):
    out = CliRunner().invoke(app, ["eval", "run", "--data", str(tmp_path / "x.tsv"), "--out", str(tmp_path / "o")])
    assert out.exit_code == 2 and "data file not found" in out.output


def test_eval_run_bad_policy_opt(tmp_path):
    (tmp_path / "d.tsv").write_text("id\taudio\treference\n")
    out = CliRunner().invoke(app, ["eval", "run", "--data", str(tmp_path / "d.tsv"), "--out", str(tmp_path / "o"),
                                   "--policy-opt", "frames"])
    assert out.exit_code == 2 and "KEY=VALUE" in out.output


def test_eval_run_unknown_policy_fails_before_loading(tmp_path):
    (tmp_path / "d.tsv").write_text("id\taudio\treference\n")
    out = CliRunner().invoke(app, ["eval", "run", "--data", str(tmp_path / "d.tsv"), "--out", str(tmp_path / "o"),
                                   "--policy", "nope"])
    assert out.exit_code == 2 and "unknown policy 'nope'" in out.output


def test_eval_run_unknown_quantization_scheme_fails_before_loading(tmp_path):
    (tmp_path / "d.tsv").write_text("id\taudio\treference\n")
    out = CliRunner().invoke(app, ["eval", "run", "--data", str(tmp_path / "d.tsv"), "--out", str(tmp_path / "o"),
                                   "--quantize", "int3"])
    assert out.exit_code == 2 and "unknown quantization scheme 'int3'" in out.output and "bf16" in out.output
