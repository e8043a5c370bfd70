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


async def test_full_speed_client_stays_within_the_servers_buffer(make_server):
    from streamrt.clients.ws_client import stream_samples
    from streamrt.server.settings import ServerSettings

    server = await make_server(ServerSettings(max_buffered_audio_s=1.0), word_ms=100.0)
    audio = np.zeros(16000 * 20, np.float32)  # 20 s sent "at once" against a 1 s buffer
    res = await stream_samples(server.url, audio, speed=0, chunk_ms=100)
    assert not res.errors and res.end["source_ms"] == 20000.0  # nothing dropped
    assert [w["text"] for w in res.words] == [f"w{i}" for i in range(200)]


class FakeSoundDevice:
    """Stands in for the sounddevice module: one input device whose callback delivers zeros."""

    def query_devices(self, kind=None):
        return {"name": "fake mic", "max_input_channels": 1}

    class InputStream:
        def __init__(self, samplerate, channels, dtype, blocksize, callback):
            import threading

            self.blocksize, self.callback = blocksize, callback
            self.running = threading.Event()
            self.thread = threading.Thread(target=self._run, daemon=True)

        def _run(self):
            import time

            while self.running.is_set():  # PortAudio calls back from its own thread
                self.callback(np.zeros((self.blocksize, 1), np.float32), self.blocksize, None, None)
                time.sleep(self.blocksize / 16000 / 4)  # 4x real time

        def __enter__(self):
            self.running.set()
            self.thread.start()
            return self

        def __exit__(self, *exc):
            self.running.clear()
            self.thread.join()


async def test_mic_stream_stops_on_request_and_still_gets_every_word(make_server, monkeypatch):
    from streamrt.clients.mic import mic_chunks
    from streamrt.clients.ws_client import stream_chunks

    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice())
    server = await make_server()
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.6, stop.set)  # as Ctrl-C does in `streamrt mic`
    start = {"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1}
    res = await stream_chunks(server.url, mic_chunks(stop=stop), start)
    assert res.close_code == 1000 and res.end is not None and res.end["source_ms"] >= 1000
    assert res.end["words"] == len(res.words) and res.words[0]["text"] == "w0"
