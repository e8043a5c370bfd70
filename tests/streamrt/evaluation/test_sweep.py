"""``streamrt eval sweep`` mechanics without weights: CountingModel stands in for Whisper."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from streamrt.errors import ConfigError
from streamrt.evaluation.grid import grid_from_cli, load_grid, parse_grid, parse_policy_spec
from streamrt.evaluation.sweep import SweepSummary, default_grid, goal_check, run_sweep
from streamrt.testing import CountingModel

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def data(tmp_path):
    """Three clips of 1.2-2 s; CountingModel 'hears' one word per 500 ms (w0 w1 ...)."""
    rows = ["id\taudio\treference"]
    for i, seconds in enumerate((1.2, 1.6, 2.0)):
        sf.write(tmp_path / f"c{i}.wav", np.zeros(int(16000 * seconds), np.float32), 16000)
        n = int(np.ceil(seconds / 0.5))
        rows.append(f"c{i}\tc{i}.wav\t{' '.join(f'w{k}' for k in range(n))}")
    path = tmp_path / "data.tsv"
    path.write_text("\n".join(rows) + "\n")
    return path


class CountingModels:
    """The sweep's model family, backed by CountingModel; counts builds; ``broken`` encoders raise."""

    def __init__(self, broken=()):
        self.builds: list[tuple[str, int]] = []
        self.broken = set(broken)

    def build(self, encoder, chunk_ms):
        self.builds.append((encoder, chunk_ms))
        if encoder in self.broken:
            raise ConfigError(f"encoder {encoder!r} cannot be built here")
        return CountingModel(word_ms=500.0, chunk_ms=chunk_ms, hold_ms=300.0)

    def transcribe(self, audio, row, *, task, language):
        return row.reference  # a perfect offline reference

    def describe(self):
        return {"model": "counting"}


GRID = {
    "encoders": ["reencode", "block-causal"],
    "chunk_ms": [200, 1000],
    "policies": [{"name": "local-agreement", "options": {"n": 2}, "encoders": ["reencode"]},
                 {"name": "alignatt", "options": {"frames": [2, 4]}}],
}


def test_sweep_writes_every_point_summary_and_plot_and_builds_one_model_per_encoder_and_chunk(data, tmp_path):
    grid = parse_grid(GRID)
    models = CountingModels()
    out = tmp_path / "sweep"
    summary = run_sweep(grid, data, out, models=models)

    # la-2 on reencode x 2 chunks + alignatt frames 2/4 x 2 encoders x 2 chunks = 10 points + offline
    assert len(grid.points) == 10
    assert [r["name"] for r in summary.rows][0] == "offline"
    assert all(r["status"] == "ok" for r in summary.rows), summary.failed
    for r in summary.rows:
        assert (out / r["name"] / "scores.json").is_file()
        assert (out / r["name"] / "instances.log").read_text().count("\n") == 3
    # the same (encoder, chunk) is reused for consecutive points of the same model settings
    assert len(models.builds) < len(grid.points)
    assert set(models.builds) == {(e, c) for e in ("reencode", "block-causal") for c in (200, 1000)}

    doc = json.loads((out / "sweep.json").read_text())
    assert len(doc["points"]) == 11 and doc["meta"]["model"] == "counting"
    assert doc["meta"]["cpu_count"] >= 1 and "load_average" in doc["meta"]
    assert (out / "sweep.png").read_bytes()[:8] == PNG_MAGIC
    table = (out / "sweep.md").read_text()
    assert "| offline |" in table and "aa-frames2_block-causal_c200" in table and "LAAL_CA" in table

    # the chunk reaches the model: 1000 ms steps commit later than 200 ms steps
    by = {r["name"]: r for r in summary.rows}
    assert by["la-n2_reencode_c1000"]["LAAL"] > by["la-n2_reencode_c200"]["LAAL"]
    assert by["offline"]["WER"] == 0.0


def test_a_failing_point_is_reported_and_the_rest_run(data, tmp_path):
    grid = parse_grid(GRID)
    summary = run_sweep(grid, data, tmp_path / "s", models=CountingModels(broken={"block-causal"}))
    failed = {r["name"] for r in summary.failed}
    assert failed == {p.name for p in grid.points if p.encoder == "block-causal"}
    assert all("cannot be built" in r["error"] for r in summary.failed)
    ok = [r for r in summary.rows if r["status"] == "ok"]
    assert len(ok) == 1 + sum(p.encoder == "reencode" for p in grid.points)
    assert "FAILED aa-frames2_block-causal_c200: ConfigError" in (tmp_path / "s" / "sweep.md").read_text()
    assert (tmp_path / "s" / "sweep.png").is_file()


def test_an_evaluation_that_raises_fails_only_its_point(data, tmp_path):
    from streamrt.evaluation.runner import evaluate_streaming

    def evaluate(model, data, *, options, **kw):
        if options["policy"] == "alignatt":
            raise RuntimeError("boom in alignatt")
        return evaluate_streaming(model, data, options=options, **kw)

    grid = parse_grid({"offline": False, "policies": ["alignatt", "local-agreement"]})
    summary = run_sweep(grid, data, tmp_path / "s", models=CountingModels(), evaluate=evaluate)
    assert [(r["name"], r["status"]) for r in summary.rows] == [
        ("aa_reencode_c1000", "failed"), ("la_reencode_c1000", "ok")]
    assert summary.rows[0]["error"] == "RuntimeError: boom in alignatt"


def test_resume_reads_finished_points_back_instead_of_running_them(data, tmp_path):
    grid = parse_grid({"policies": ["local-agreement"], "chunk_ms": [200, 1000]})
    first = run_sweep(grid, data, tmp_path / "s", models=CountingModels())
    models = CountingModels()
    again = run_sweep(grid, data, tmp_path / "s", models=models, resume=True)
    assert models.builds == []
    assert [r["status"] for r in again.rows] == ["reused"] * 3
    assert [r["LAAL"] for r in again.rows] == [r["LAAL"] for r in first.rows]


def test_jobs_run_points_in_threads_with_the_same_results(data, tmp_path):
    grid = parse_grid({"policies": ["local-agreement", "wait-k"], "chunk_ms": [200, 1000]})
    one = run_sweep(grid, data, tmp_path / "a", models=CountingModels())
    two = run_sweep(grid, data, tmp_path / "b", models=CountingModels(), jobs=2)
    assert [(r["name"], r["WER"], r["LAAL"]) for r in one.rows] == [(r["name"], r["WER"], r["LAAL"]) for r in two.rows]


@pytest.mark.parametrize("doc, words", [
    ({"encoder": ["reencode"]}, ["unknown key 'encoder'", "encoders"]),
    ({"policies": [{"name": "alignatt", "option": {"frames": 2}}]}, ["policies[0]", "unknown key 'option'"]),
    ({"policies": [{"options": {"n": 2}}]}, ["policies[0]", "'name'"]),
    ({"policies": [{"name": "alignatt", "options": {"frames": 0}}]}, ["policies[0]", "'frames'", ">= 1"]),
    ({"policies": [{"name": "alignatt", "options": {"frame": 2}}]}, ["policies[0]", "frame", "frames"]),
    ({"policies": ["nope"]}, ["unknown policy 'nope'", "local-agreement"]),
    ({"policies": ["edatt"], "encoders": ["causal"]}, ["unknown encoder mode 'causal'", "block-causal"]),
    ({"policies": ["edatt"], "chunk_ms": [0]}, ["'chunk_ms'", "positive"]),
    ({"offline": "yes"}, ["'offline'", "true or false"]),
])
def test_a_bad_grid_names_the_key(doc, words):
    with pytest.raises(ConfigError) as e:
        parse_grid(doc, source="g.yaml")
    assert e.value.message.startswith("g.yaml")
    for w in words:
        assert w in e.value.message


def test_grid_file_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "grid.yaml"
    bad.write_text("policies: [alignatt\n")
    with pytest.raises(ConfigError, match="grid.yaml is not valid YAML"):
        load_grid(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_grid(tmp_path / "missing.yaml")
    bad.write_text("policies:\n  - name: alignatt\n    options: {frames: [2, 8]}\nchunk_ms: 500\n")
    assert [p.name for p in load_grid(bad).points] == ["aa-frames2_reencode_c500", "aa-frames8_reencode_c500"]


def test_command_line_points_cross_policy_encoder_and_chunk():
    assert parse_policy_spec("alignatt:frames=2") == ("alignatt", {"frames": 2})
    assert parse_policy_spec("edatt:alpha=0.3,lambda_frames=2") == ("edatt", {"alpha": 0.3, "lambda_frames": 2})
    grid = grid_from_cli(None, ["local-agreement:n=2", "wait-k:k=2"], ["reencode", "sliding"], [500], None)
    assert grid.offline and len(grid.points) == 4
    with pytest.raises(ConfigError, match="need at least one --policy"):
        grid_from_cli(None, [], ["reencode"], [], None)
    with pytest.raises(ConfigError, match="option 'x'"):
        parse_policy_spec("alignatt:x")


def test_default_grid_is_small_and_valid():
    grid = default_grid()
    assert grid.offline and 2 <= len(grid.points) <= 8
    assert any(p.policy == "local-agreement" and p.encoder == "reencode" and p.options == {"n": 2} for p in grid.points)


def test_goal_check_picks_the_best_wer_under_the_latency_bound():
    rows = [
        {"name": "offline", "status": "ok", "WER": 5.0},
        {"name": "slow", "status": "ok", "WER": 5.2, "LAAL": 1800.0},
        {"name": "fast", "status": "ok", "WER": 5.9, "LAAL": 900.0},
        {"name": "faster", "status": "ok", "WER": 7.0, "LAAL": 600.0},
        {"name": "broken", "status": "failed", "error": "x"},
    ]
    g = goal_check(SweepSummary(rows))
    assert g["point"] == "fast" and g["met"] is True
    g = goal_check(SweepSummary(rows), max_wer_delta=0.5)
    assert g["point"] == "fast" and g["met"] is False
    assert goal_check(SweepSummary(rows[1:])) is None


def test_cli_sweep_runs_with_a_stand_in_model_and_rejects_a_bad_grid(data, tmp_path, monkeypatch):
    import streamrt.evaluation.sweep as sweep_mod
    from streamrt.cli import app

    class Stand(CountingModels):
        def __init__(self, name, *, settings=None, encoder_settings=None):
            super().__init__()

        def load(self):
            pass

    monkeypatch.setattr(sweep_mod, "WhisperPointModels", Stand)
    runner = CliRunner()
    out = tmp_path / "o"
    res = runner.invoke(app, ["eval", "sweep", "--data", str(data), "--out", str(out), "--quiet",
                              "--policy", "alignatt:frames=2", "--policy", "local-agreement", "--chunk-ms", "200",
                              "--chunk-ms", "1000", "--clock", "process"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "sweep.json").read_text())["meta"]["clock"] == "ProcessClock"
    assert "aa-frames2_reencode_c1000" in res.output and "| offline |" in res.output
    assert (out / "sweep.png").is_file() and len(json.loads((out / "sweep.json").read_text())["points"]) == 5

    bad = tmp_path / "bad.yaml"
    bad.write_text("policies:\n  - name: edatt\n    options: {alfa: 0.3}\n")
    res = runner.invoke(app, ["eval", "sweep", "--data", str(data), "--out", str(out), "--grid", str(bad)])
    assert res.exit_code == 2
    assert "alfa" in res.output and "bad.yaml" in res.output


def test_plot_survives_outliers_failed_points_and_missing_latencies(tmp_path):
    from streamrt.evaluation.plot import plot_sweep

    rows = [
        {"name": "offline", "curve": "offline", "status": "ok", "WER": 2.0, "LAAL": 4000.0, "LAAL_CA": 5000.0},
        {"name": "a", "curve": "p / reencode", "policy": "p", "encoder": "reencode", "chunk_ms": 500,
         "status": "ok", "WER": 3.0, "LAAL": 800.0, "LAAL_CA": 1500.0},
        {"name": "b", "curve": "p / sliding", "policy": "p", "encoder": "sliding", "chunk_ms": 500,
         "status": "ok", "WER": 98.0, "LAAL": 4000.0, "LAAL_CA": None},
        {"name": "c", "curve": "q / reencode", "status": "failed", "error": "boom"},
    ]
    path = plot_sweep(rows, tmp_path / "x" / "p.png", title="t")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_cli_refuses_the_process_clock_with_parallel_jobs(data, tmp_path):
    from streamrt.cli import app

    res = CliRunner().invoke(app, ["eval", "sweep", "--data", str(data), "--out", str(tmp_path / "o"),
                                   "--policy", "wait-k", "--clock", "process", "--jobs", "2"])
    assert res.exit_code == 2 and "--jobs 1" in res.output
