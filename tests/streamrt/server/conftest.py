from __future__ import annotations

import pytest

from streamrt.server.settings import ServerSettings
from streamrt.server.ws import StreamServer
from tests.streamrt.server.standin import InlineScheduler, PolicyCheckingModel


@pytest.fixture
async def make_server():
    """``await make_server(settings=..., **model_kw)`` -> a started StreamServer on a free port."""
    servers: list[StreamServer] = []

    async def factory(settings: ServerSettings | None = None, **model_kw) -> StreamServer:
        model = PolicyCheckingModel(**model_kw)
        settings = settings or ServerSettings(model_name="counting")
        server = StreamServer(model, settings=settings, scheduler=InlineScheduler(model), port=0)
        await server.scheduler.start()
        await server.start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.stop()
        await server.scheduler.stop()
