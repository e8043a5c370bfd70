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


async def start_test_server(settings=None, **model_kw):
    """A started StreamServer (free port) on a PolicyCheckingModel."""
    from streamrt.server.settings import ServerSettings
    from streamrt.server.ws import StreamServer

    model = PolicyCheckingModel(**model_kw)
    settings = settings or ServerSettings(model_name="counting")
    server = StreamServer(model, settings=settings, port=0)  # owns a streamrt.scheduler.Scheduler
    await server.start()
    return server


async def stop_test_server(server) -> None:
    await server.stop()
