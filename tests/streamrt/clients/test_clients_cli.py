"""The terminal clients: ``streamrt stream`` against a live server, ``streamrt mic`` without a
microphone, ``streamrt demo --fake-model``."""

from __future__ import annotations

import asyncio
import sys

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from streamrt.cli import app


async def run_cli(*args: str, timeout_s: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamrt", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PYTHONPATH": "."},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    return proc.returncode, out.decode()


async def test_stream_command_prints_captions_and_summary(make_server, tmp_path):
    server = await make_server()
    wav = tmp_path / "tone.wav"
    sf.write(wav, (0.1 * np.sin(np.arange(32000) / 9.0)).astype(np.float32), 16000)  # 2 s
    rc, out = await run_cli("stream", str(wav), "--url", server.url, "--speed", "0")
    assert rc == 0, out
    assert "w0 w1 w2 w3" in out  # the transcript
    assert "mean_commit_lag_ms" in out and "source_ms" in out and "2000.0" in out  # the summary table


async def test_stream_command_reports_a_refused_start(make_server, tmp_path):
    server = await make_server()
    wav = tmp_path / "tone.wav"
    sf.write(wav, np.zeros(8000, np.float32), 16000)
    rc, out = await run_cli("stream", str(wav), "--url", server.url, "--policy", "nope")
    assert rc == 1 and "unknown_policy" in out and "1008" in out


def test_stream_command_unreachable_server(tmp_path):
    wav = tmp_path / "x.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    result = CliRunner().invoke(app, ["stream", str(wav), "--url", "ws://127.0.0.1:9"])
    assert result.exit_code == 1 and "cannot reach the server" in result.output


def test_mic_without_a_microphone_says_so_and_exits_2():
    from streamrt.clients.mic import MicUnavailable, open_sounddevice

    try:
        open_sounddevice()
    except MicUnavailable:
        pass
    else:
        pytest.skip("this machine has a microphone")
    result = CliRunner().invoke(app, ["mic"])
    assert result.exit_code == 2 and "no microphone" in result.output


def test_demo_with_the_counting_model_streams_and_stops():
    result = CliRunner().invoke(app, ["demo", "--fake-model", "--speed", "0"])
    assert result.exit_code == 0, result.output
    assert "transcript:" in result.output and "w0 w1" in result.output and "server stopped" in result.output


async def test_raw_protocol_demo_script_runs(make_server, tmp_path):
    server = await make_server()
    wav = tmp_path / "stereo44k.wav"
    sf.write(wav, np.zeros((44100, 2), np.float32), 44100)  # 1 s, stereo, 44.1 kHz: resampled on the server
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "demos/raw_protocol.py", str(wav), "--url", server.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={"PYTHONPATH": ".", "PATH": "/usr/bin:/bin"},
    )
    out = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
    assert proc.returncode == 0, out
    assert "'type': 'ready'" in out and "commit: w0" in out and "'words': 2" in out and "closed with 1000" in out
