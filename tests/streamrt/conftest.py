from __future__ import annotations

import pytest

from tests.streamrt.server.server_helpers import start_test_server, stop_test_server


@pytest.fixture
async def make_server():
    """``await make_server(settings=..., **model_kw)`` -> a started StreamServer on a free port
    (server and client tests share it)."""
    servers = []

    async def factory(settings=None, **model_kw):
        server = await start_test_server(settings, **model_kw)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await stop_test_server(server)
