"""The streams benchmark harness keeps its output contract (issue 6) and delivers every unit; the
figures themselves are measured by `streamrt bench streams`, never asserted here."""

from __future__ import annotations

import numpy as np

from streamrt.bench.simulated_compute import SimulatedCompute
from streamrt.bench.streams import passes, run_streams, sweep_streams
from streamrt.testing import CountingModel

CONTRACT = {"streams", "kept_realtime", "p50_commit_delay_ms", "p95_commit_delay_ms", "rtf_max"}


async def test_run_streams_reports_the_contract_and_every_unit():
    model = CountingModel()
    result = await run_streams(model, 3, 1.0, np.zeros(8000, np.float32), chunk_ms=100, per_stream=True)
    assert CONTRACT <= set(result)
    assert result["streams"] == 3 and len(result["per_stream"]) == 3
    assert result["units"] == 3 * 2  # 1 s of audio = two 500 ms words per stream, all committed
    assert result["p50_commit_delay_ms"] <= result["p95_commit_delay_ms"]
    assert 0 <= result["rtf_max"] < 1  # a step that does nothing costs far less than the audio
    assert max(model.batch_sizes) <= 3


async def test_sweep_reports_the_largest_passing_count():
    model = SimulatedCompute(CountingModel(), fixed_ms=1.0, per_stream_ms=0.1)
    result = await sweep_streams(model, 0.5, np.zeros(4000, np.float32), counts=[1, 2], p95_limit_ms=1e9)
    assert [t["streams"] for t in result["trials"]] == [1, 2]
    assert result["max_streams"] == max([0] + [t["streams"] for t in result["trials"] if passes(t, 1e9)])
    assert all("host_speed" not in t for t in result["trials"])


async def test_sweep_probes_the_host_before_each_trial():
    model = SimulatedCompute(CountingModel(), fixed_ms=1.0, per_stream_ms=0.1)
    calls = []

    def probe():
        calls.append(len(calls))
        return {"matmul_gflops": 100 + len(calls)}

    result = await sweep_streams(model, 0.5, np.zeros(4000, np.float32), counts=[1, 2, 1], p95_limit_ms=1e9,
                                 probe=probe)
    # once per trial run (the repeated count is not run again), in the order the trials ran
    assert len(calls) == 2
    assert [t["host_speed"] for t in result["trials"]] == [{"matmul_gflops": 101}, {"matmul_gflops": 102}]


def test_cli_prints_one_json_object_with_the_contract(tmp_path):
    import json

    import soundfile as sf
    import typer
    from typer.testing import CliRunner

    from streamrt.bench import streams

    wav = tmp_path / "silence.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    app = typer.Typer()
    streams.register(app)
    app.command("noop")(lambda: None)  # a group of two commands, as under `streamrt bench`
    res = CliRunner().invoke(app, ["streams", "--model", "counting", "--streams", "2", "--duration", "0.5",
                                   "--audio", str(wav), "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert CONTRACT <= set(out) and out["streams"] == 2 and out["model"] == "counting"


async def test_spike_reports_the_base_streams_and_the_ladder_history():
    from streamrt.bench.streams import run_spike

    model = SimulatedCompute(CountingModel(), fixed_ms=1.0, per_stream_ms=0.1, precision_speedup=0.5)
    result = await run_spike(model, 1, 1.0, np.zeros(8000, np.float32), spike_start_s=0.2, spike_duration_s=0.5)
    assert CONTRACT <= set(result) and result["streams"] == 2
    assert result["base"]["streams"] == 1 and result["spike"]["streams"] == 1
    assert result["units"] == 2 + 1  # 1 s and 0.5 s of 500 ms words
    assert isinstance(result["degradation_history"], list)


async def test_a_failing_stream_ends_the_run_and_is_reported():
    class Failing(CountingModel):
        def step(self, streams):
            if any(s is self.bad for s in streams):
                raise RuntimeError("broken stream")
            super().step(streams)

        def create_stream(self, options=None):
            s = super().create_stream(options)
            if not hasattr(self, "bad"):
                self.bad = s
            return s

    result = await run_streams(Failing(), 2, 0.5, np.zeros(8000, np.float32))
    assert result["failed_streams"] == 1 and not result["kept_realtime"]
    assert "broken stream" in result["errors"][0]
