"""The server as a Ray Serve deployment: 2 replicas on a local Ray cluster (2 CPUs), counting model.

Sessions are spread over the replicas (``ready.replica``) and each gets its whole transcript; an
upload to ``/v1/audio/transcriptions`` goes through the same proxy and app; deleting the application
drains live sessions; the
deployment options follow the settings (a session is one request: ``max_ongoing_requests`` is
``max_sessions`` plus the HTTP headroom; autoscaling uses the busy-fraction policy)."""

import asyncio
import io
import json
import socket

import numpy as np
import pytest
import soundfile as sf

from streamrt.errors import ConfigError
from streamrt.server.ray_autoscale import BusyFractionPolicy
from streamrt.server.ray_serve import RayServeSettings
from streamrt.server.settings import ServerSettings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _open(url: str):
    import websockets

    ws = await websockets.connect(url)
    await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}))
    ready = json.loads(await ws.recv())
    assert ready["type"] == "ready", ready
    return ws, ready


async def _stream(ws, seconds: float) -> list[dict]:
    """Send ``seconds`` of audio at full speed, then stop; every message until the server closes."""
    pcm = (np.sin(np.arange(int(16000 * seconds)) / 8) * 8000).astype("<i2").tobytes()
    for i in range(0, len(pcm), 3200):
        await ws.send(pcm[i : i + 3200])
    await ws.send(json.dumps({"type": "stop"}))
    return [json.loads(m) async for m in ws]


@pytest.mark.ray
async def test_sessions_spread_over_two_replicas_and_each_gets_its_transcript(ray_cluster):
    from functools import partial

    import httpx
    from ray import serve

    from streamrt.cli.models import load_model
    from streamrt.server.ray_serve import APP_NAME, run_on_ray

    port = _free_port()
    settings = ServerSettings(model_name="counting", max_sessions=2)
    layout = RayServeSettings(replicas=2, cpus_per_replica=0.5, http_headroom=1, port=port)
    url = await asyncio.to_thread(run_on_ray, partial(load_model, "counting", True), settings, layout)
    try:
        # opened one after another: the proxy routes each to the replica with fewer requests in flight
        opened = [await _open(url) for _ in range(4)]
        replicas = [ready["replica"] for _, ready in opened]
        assert sorted(replicas.count(r) for r in set(replicas)) == [2, 2], replicas
        seconds = [1.0, 1.5, 2.0, 2.5]
        got = await asyncio.gather(*(_stream(ws, s) for (ws, _), s in zip(opened, seconds)))
        for msgs, s in zip(got, seconds):
            words = [w["text"] for m in msgs if m["type"] == "commit" for w in m["words"]]
            assert words == [f"w{i}" for i in range(int(s * 2))]  # one word per 500 ms, none lost
            assert msgs[-1]["type"] == "end" and not [m for m in msgs if m["type"] == "error"]
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
        assert health["status"] == "ok" and health["replica"] in replicas and health["max_sessions"] == 2
        # the same one-port app serves file transcription through Ray's proxy
        wav = io.BytesIO()
        sf.write(wav, np.zeros(16000 * 2, np.float32), 16000, format="WAV")
        reply = await asyncio.to_thread(httpx.post, f"http://127.0.0.1:{port}/v1/audio/transcriptions",
                                        files={"file": ("a.wav", wav.getvalue(), "audio/wav")},
                                        data={"model": "counting"}, timeout=30)
        assert reply.status_code == 200 and reply.json()["text"] == "w0 w1 w2 w3", reply.text
        # deleting the application drains the replicas: a live session commits every word, ends, 1001
        ws, _ = await _open(url)
        await ws.send(np.zeros(int(16000 * 1.5), "<i2").tobytes())
        deleting = asyncio.create_task(asyncio.to_thread(serve.delete, APP_NAME))
        msgs = [json.loads(m) async for m in ws]
        await deleting
        assert [w["text"] for m in msgs if m["type"] == "commit" for w in m["words"]] == ["w0", "w1", "w2"]
        assert msgs[-1]["type"] == "end" and ws.close_code == 1001
    finally:
        await asyncio.to_thread(serve.shutdown)


def test_deployment_options_follow_the_settings():
    server = ServerSettings(max_sessions=16)
    fixed = RayServeSettings(replicas=3, cpus_per_replica=2).deployment_options(server)
    assert fixed["num_replicas"] == 3 and fixed["max_ongoing_requests"] == 16 + 8
    assert fixed["ray_actor_options"] == {"num_cpus": 2} and fixed["graceful_shutdown_timeout_s"] == 120.0
    auto = RayServeSettings(replicas=2, max_replicas=6, target_busy_fraction=0.5).deployment_options(server)
    scaling = auto["autoscaling_config"]
    assert "num_replicas" not in auto and (scaling["min_replicas"], scaling["initial_replicas"], scaling["max_replicas"]) == (1, 2, 6)
    assert scaling["policy"]["policy_function"] is BusyFractionPolicy
    assert scaling["policy"]["policy_kwargs"] == {"target_busy_fraction": 0.5, "max_sessions": 16}


@pytest.mark.parametrize("kw, message", [
    ({"replicas": 0}, "replicas must be >= 1"),
    ({"min_replicas": 3, "max_replicas": 2}, "min_replicas <= max_replicas"),
    ({"target_busy_fraction": 1.5}, "target_busy_fraction must be in"),
    ({"cpus_per_replica": 0}, "cpus_per_replica must be > 0"),
    ({"drain_timeout_s": -1}, "drain_timeout_s must be >= 0"),
    ({"status_poll_s": 0}, "status_poll_s must be > 0 or None"),
])
def test_bad_layouts_name_the_setting(kw, message):
    with pytest.raises(ConfigError, match=message):
        RayServeSettings(**kw)


def test_the_documented_serve_config_builds_an_application():
    from pathlib import Path

    import yaml

    pytest.importorskip("ray.serve", reason="Ray is an extra: pip install 'streamrt[ray]'")
    from ray.serve import Application
    from ray.serve.schema import ServeDeploySchema

    from streamrt.server.ray_serve import app_builder

    doc = yaml.safe_load((Path(__file__).parents[3] / "docs" / "ray-serve.yaml").read_text())
    ServeDeploySchema.model_validate(doc)  # what `serve run` / `serve deploy` check first
    (app,) = doc["applications"]
    assert app["import_path"] == "streamrt.server.ray_serve:app_builder"
    assert isinstance(app_builder({**app["args"], "fake_model": True}), Application)  # the model loads in replicas
    with pytest.raises(ConfigError, match="unknown app_builder argument.*replica_count"):
        app_builder({"replica_count": 2})
    # `serve run ...:app_builder key=value` passes text: read as numbers, bools and None
    built = app_builder({"fake_model": "true", "replicas": "3", "max_sessions": "12", "idle_timeout_s": "none"})
    config = built._bound_deployment._deployment_config  # Ray has no public reader for it
    assert config.num_replicas == 3 and config.max_ongoing_requests == 12 + 8


@pytest.mark.parametrize("args, message", [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--min-replicas", "3", "--max-replicas", "2"], "min_replicas <= max_replicas"),
])
def test_serve_ray_bad_flags_fail_before_any_cluster_starts(args, message):
    from typer.testing import CliRunner

    from streamrt.cli import app

    out = CliRunner().invoke(app, ["serve", "--ray", *args])
    assert out.exit_code == 2 and message in " ".join(out.output.split()).replace("│ ", "")
