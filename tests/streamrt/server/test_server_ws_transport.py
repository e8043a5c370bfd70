"""The websockets transport (`streamrt serve --transport websockets`): the WebSocket, limits and
/metrics tests that the served ASGI transport passes, rerun on it (the ``server_transport`` fixture
below)."""

from __future__ import annotations

import pytest

from tests.streamrt.server.test_server_ws import *  # noqa: F403  (the tests themselves)
from tests.streamrt.server.test_server_ws_limits import *  # noqa: F403
from tests.streamrt.server.test_server_metrics import *  # noqa: F403


@pytest.fixture
def server_transport() -> str:
    return "websockets"
