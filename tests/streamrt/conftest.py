from __future__ import annotations

import sys

import pytest

from tests.streamrt.server.server_helpers import start_test_server, stop_test_server


@pytest.fixture
def server_transport() -> str:
    """The transport the server tests run on: ``asgi``, what `streamrt serve` runs (a test module
    overrides this fixture to rerun its tests on ``websockets``)."""
    return "asgi"


@pytest.fixture
async def make_server(server_transport):
    """``await make_server(settings=..., **model_kw)`` -> a started server on a free port
    (server and client tests share it)."""
    servers = []

    async def factory(settings=None, **model_kw):
        server = await start_test_server(settings, server_transport, **model_kw)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await stop_test_server(server)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster (2 CPUs) for the ``ray``-marked tests of one module, shut down after them
    so that it takes no CPU from the rest of the suite; Ray is an extra."""
    ray = pytest.importorskip("ray", reason="Ray is an extra: pip install 'streamrt[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    try:
        if "ray.serve" in sys.modules:  # a test deployed something
            sys.modules["ray.serve"].shutdown()
    finally:
        ray.shutdown()
