"""The encoder benchmark's plumbing (not its timings): positions, trims, table and CLI registration."""

from __future__ import annotations

from typer.testing import CliRunner

from streamrt.bench.encoder import BenchSettings, ModeResult, bench_mode, format_table, to_json
from streamrt.encoders.factory import make_encoder


def test_bench_mode_reaches_positions_past_the_window_by_trimming(whisper_encoder):
    s = BenchSettings(positions_s=(1.0, 9.0), chunk_ms=200.0, repeats=1, keep_s=1.0)
    enc = make_encoder(whisper_encoder, "block-causal", chunk_frames=5, left_frames=20)
    step_ms, median_ms, window_s, trim_ms = bench_mode(enc, s)
    assert set(step_ms) == set(window_s) == {1.0, 9.0}
    assert all(v > 0 for v in step_ms.values())
    assert trim_ms is not None  # 9 s is past the small encoder's 4 s window
    assert all(w <= 4.0 for w in window_s.values())


def test_table_and_json_list_every_mode():
    s = BenchSettings(positions_s=(10.0, 600.0))
    r = [ModeResult("sliding", "x", {10.0: 2.0, 600.0: 2.1}, {10.0: 2.0, 600.0: 2.2}, {10.0: 10.0, 600.0: 20.0}, None, 1.05)]
    table = format_table("random", r, s)
    assert "| sliding" in table and "1.05" in table and "ratio 600/10" in table
    assert to_json("random", r, s)["results"][0]["step_ms"][600.0] == 2.1


def test_cli_registers_bench_encoder():
    from streamrt.cli import app

    result = CliRunner().invoke(app, ["bench", "encoder", "--help"])
    assert result.exit_code == 0 and "--model" in result.output and "--format" in result.output
    bad = CliRunner().invoke(app, ["bench", "encoder", "--format", "xml"])
    assert bad.exit_code != 0
