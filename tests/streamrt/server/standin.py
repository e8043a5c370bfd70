"""Test doubles for the server tests: a model that validates policies like the real one, and a tiny
stand-in for ``streamrt.scheduler.Scheduler`` (same API, one session's steps at a time, inline)."""

from __future__ import annotations

import asyncio
from typing import Mapping

from streamrt.clock import MonotonicClock
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


class InlineScheduler:
    """The Scheduler API (start/add/wake/remove/stop) with steps run on the event loop, batched."""

    def __init__(self, model, clock=None, settings=None):
        self.model = model
        self.clock = clock or MonotonicClock()
        self._sessions: dict = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.max_batch = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def add(self, session, on_output) -> None:
        self._sessions[session] = on_output
        self._wake.set()

    def wake(self, session) -> None:
        self._wake.set()

    def remove(self, session) -> None:
        self._sessions.pop(session, None)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                live = list(self._sessions.items())
                for s, cb in live:  # closed sessions with nothing left to step still need their end
                    if s.closed and not s.ended and not s.ready():
                        s.run_until_blocked(self.model)
                        cb(s)
                ready = [(s, cb) for s, cb in live if s.ready()]
                if not ready:
                    break
                self.max_batch = max(self.max_batch, len(ready))
                t0 = self.clock.now()
                self.model.step([s.stream for s, _ in ready])
                dt = self.clock.now() - t0
                for s, cb in ready:
                    s.complete_step(dt)
                    if s in self._sessions:
                        cb(s)
                await asyncio.sleep(0)


async def start_test_server(settings=None, **model_kw):
    """A started StreamServer (free port) on a PolicyCheckingModel driven by an InlineScheduler."""
    from streamrt.server.settings import ServerSettings
    from streamrt.server.ws import StreamServer

    model = PolicyCheckingModel(**model_kw)
    settings = settings or ServerSettings(model_name="counting")
    server = StreamServer(model, settings=settings, scheduler=InlineScheduler(model), port=0)
    await server.scheduler.start()
    await server.start()
    return server


async def stop_test_server(server) -> None:
    await server.stop()
    await server.scheduler.stop()
