"""Test helpers for the server tests: a counting model that validates policies like the real one, and
a server on it with the real scheduler on a free port."""

from __future__ import annotations

from typing import Mapping

from streamrt.errors import PolicyOptionError, UnknownPolicyError
from streamrt.testing import CountingModel, CountingStream

KNOWN_POLICIES = {"local-agreement": {"n"}, "wait-k": {"k"}}


class PolicyCheckingModel(CountingModel):
    """CountingModel whose create_stream validates ``policy``/``policy_options`` as a real model does."""

    def create_stream(self, options: Mapping[str, object] | None = None) -> CountingStream:
        options = dict(options or {})
        policy = options.get("policy", "local-agreement")
        if policy not in KNOWN_POLICIES:
            raise UnknownPolicyError(policy, list(KNOWN_POLICIES))
        bad = sorted(set(options.get("policy_options") or {}) - KNOWN_POLICIES[policy])
        if bad:
            raise PolicyOptionError(f"policy {policy!r}: unknown option(s) {', '.join(bad)}; known: {sorted(KNOWN_POLICIES[policy])}")
        return super().create_stream(options)

    def describe(self) -> dict:
        return {"model": "counting", "word_ms": self.word_ms, "chunk_ms": self.chunk_ms}


def server_class(transport: str = "asgi"):
    """The server class of a transport: ``asgi`` (what `streamrt serve` runs) or ``websockets``."""
    if transport == "websockets":
        from streamrt.server.ws import StreamServer

        return StreamServer
    from streamrt.server.asgi_server import AsgiServer

    return AsgiServer


async def start_test_server(settings=None, transport: str = "asgi", **model_kw):
    """A started server (free port) on a PolicyCheckingModel, on the transport `streamrt serve` runs
    unless ``transport`` says otherwise."""
    from streamrt.server.settings import ServerSettings

    model = PolicyCheckingModel(**model_kw)
    settings = settings or ServerSettings(model_name="counting")
    server = server_class(transport)(model, settings=settings, port=0)  # owns a streamrt.scheduler.Scheduler
    await server.start()
    return server


async def stop_test_server(server) -> None:
    await server.stop()
