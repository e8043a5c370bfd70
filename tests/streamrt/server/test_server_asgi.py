"""``build_app`` is a plain ASGI app: on an ASGI server that knows nothing of streamrt (stock uvicorn
here; Ray Serve's replicas run it the same way) its lifespan starts the scheduler, the WebSocket
protocol and the HTTP API work, and shutdown stops the scheduler."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from streamrt.clients.ws_client import stream_samples
from streamrt.server.hub import SessionHub
from streamrt.server.settings import ServerSettings
from tests.streamrt.server.server_helpers import PolicyCheckingModel
from tests.streamrt.server.test_server_openai_api import wav
from tests.streamrt.server.test_server_ws import TONE, http_get

uvicorn = pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")


async def test_build_app_on_stock_uvicorn_serves_both_apis_within_its_lifespan():
    from streamrt.server.asgi import build_app

    hub = SessionHub(PolicyCheckingModel(), settings=ServerSettings(model_name="counting"))
    server = uvicorn.Server(uvicorn.Config(build_app(hub), lifespan="on", log_config=None, log_level="warning"))
    server.capture_signals = lambda: __import__("contextlib").nullcontext()  # leave pytest's handlers alone
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        status, body = await http_get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        res = await stream_samples(f"ws://127.0.0.1:{port}", TONE, speed=0, chunk_ms=100)
        assert [w["text"] for w in res.words] == [f"w{i}" for i in range(6)] and res.close_code == 1000
        c = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="-", max_retries=0)
        assert (await c.audio.transcriptions.create(model="m", file=("a.wav", wav(1.0)))).text == "w0 w1"
        assert hub.stats.sessions_started == 2
    finally:
        server.should_exit = True
        await task
        sock.close()
    ready, details = hub.health()
    assert not ready and details["status"] == "draining"  # the lifespan's end drained the hub
