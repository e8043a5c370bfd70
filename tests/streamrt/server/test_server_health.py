"""/healthz says which configuration and precision the replica serves, and why (issue 16)."""

from __future__ import annotations

import json

from streamrt.quant.precision import resolve_precision
from streamrt.server.settings import ServerSettings
from tests.streamrt.server.server_helpers import PolicyCheckingModel, server_class
from tests.streamrt.server.test_server_ws import http_get


class ConfiguredModel(PolicyCheckingModel):
    """A counting model that reports a preset and a precision, as WhisperStreamingModel.describe does."""

    precision = resolve_precision("auto")

    def describe(self) -> dict:
        return {**super().describe(), "preset": "balanced", **self.precision.describe()}


async def test_healthz_reports_the_preset_and_the_precision_with_its_reason():
    server = server_class()(ConfiguredModel(), settings=ServerSettings(model_name="counting"), port=0)
    await server.start()
    try:
        status, body = await http_get(f"http://127.0.0.1:{server.port}/healthz")
    finally:
        await server.stop()
    health = json.loads(body)
    assert status == 200 and health["preset"] == "balanced"
    assert health["precision"] == ConfiguredModel.precision.describe()
    assert health["precision"]["cpu_capability"] == ConfiguredModel.precision.cpu.label
    assert health["precision"]["precision_reason"].startswith(ConfiguredModel.precision.name)


async def test_healthz_of_a_model_without_a_configuration_has_no_precision(make_server):
    server = await make_server()
    _, body = await http_get(f"http://127.0.0.1:{server.port}/healthz")
    health = json.loads(body)
    assert "precision" not in health and "preset" not in health
