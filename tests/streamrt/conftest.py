from __future__ import annotations

import sys

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


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster (2 CPUs) for every ``ray``-marked test of the run; Ray is an extra."""
    ray = pytest.importorskip("ray", reason="Ray is an extra: pip install 'streamrt[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    try:
        if "ray.serve" in sys.modules:  # a test deployed something
            sys.modules["ray.serve"].shutdown()
    finally:
        ray.shutdown()
