"""A protocol v1 client (websockets asyncio): send PCM, collect partial/commit/end.

    result = await stream_samples("ws://127.0.0.1:8765/v1/stream", samples_16k, speed=1.0,
                                  on_message=print)
    result.text, result.words, result.end["summary"], result.close_code

``speed``: 1.0 sends in real time, 2.0 twice as fast, 0 as fast as the server takes it: the client
stays within the server's ``max_buffered_audio_s`` by watching how far the model has got (partial
``media_ms``, commit ``media_delay_ms``); ``buffer_full`` errors (dropped chunks) show in
``result.errors`` only if the server sends no news for a while.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Iterable, Iterator

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from streamrt.audio import ENCODINGS
from streamrt.errors import StreamrtError

STREAM_PATH = "/v1/stream"


def stream_url(url: str) -> str:
    """Accept ``ws://host:port`` or a full endpoint; http(s) becomes ws(s)."""
    if url.startswith("http"):
        url = "ws" + url[4:]
    return url if url.rstrip("/").endswith(STREAM_PATH) else url.rstrip("/") + STREAM_PATH


def encode_pcm(samples: np.ndarray, encoding: str = "pcm_s16le") -> bytes:
    x = np.asarray(samples, dtype=np.float32)
    if encoding == "pcm_s16le":
        return (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    if encoding == "pcm_f32le":
        return x.astype("<f4").tobytes()
    raise ValueError(f"unsupported encoding {encoding!r}; use pcm_s16le or pcm_f32le")


def pcm_chunks(samples: np.ndarray, sample_rate: int, chunk_ms: float = 100.0, encoding: str = "pcm_s16le") -> Iterator[bytes]:
    n = max(1, int(sample_rate * chunk_ms / 1000))
    for i in range(0, len(samples), n):
        yield encode_pcm(samples[i : i + n], encoding)


@dataclass
class StreamResult:
    ready: dict | None = None
    messages: list[dict] = field(default_factory=list)
    end: dict | None = None
    close_code: int | None = None
    close_reason: str = ""

    @property
    def commits(self) -> list[dict]:
        return [m for m in self.messages if m["type"] == "commit"]

    @property
    def words(self) -> list[dict]:
        return [w for m in self.commits for w in m["words"]]

    @property
    def text(self) -> str:
        return " ".join(w["text"] for w in self.words)

    @property
    def errors(self) -> list[dict]:
        return [m for m in self.messages if m["type"] == "error"]


async def paced(chunks: Iterable[bytes], chunk_s: float, speed: float) -> AsyncIterator[bytes]:
    """Yield chunk i no earlier than i * chunk_s / speed after the first (speed 0: no waiting)."""
    t0 = time.perf_counter()
    for i, chunk in enumerate(chunks):
        if speed > 0:
            delay = t0 + i * chunk_s / speed - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)
        yield chunk


class _FlowControl:
    """Keeps a fast sender within the server's ``max_buffered_audio_s`` (from ``ready``): it waits
    while more than ``ahead_fraction`` of that is sent but not yet consumed by the model, judged by
    the ``media_ms``/``media_delay_ms`` the server reports. Without news for ``stall_s`` it sends
    anyway (the server then answers ``buffer_full`` rather than the client hanging)."""

    def __init__(self, start: dict, ahead_fraction: float = 0.6, stall_s: float = 2.0):
        width = ENCODINGS[start.get("encoding", "pcm_s16le")][1]
        self.bytes_per_ms = start.get("sample_rate", 16000) * width * start.get("channels", 1) / 1000.0
        self.ahead_fraction = ahead_fraction
        self.stall_s = stall_s
        self.sent_ms = 0.0
        self.consumed_ms = 0.0
        self.limit_ms: float | None = None
        self._news = asyncio.Event()

    def observe(self, msg: dict) -> None:
        if msg["type"] == "ready":
            limit_s = (msg.get("limits") or {}).get("max_buffered_audio_s")
            self.limit_ms = None if limit_s is None else 1000.0 * limit_s * self.ahead_fraction
        elif msg["type"] == "partial":
            self.consumed_ms = max(self.consumed_ms, msg.get("media_ms", 0.0))
        elif msg["type"] == "commit" and msg["words"]:
            self.consumed_ms = max(self.consumed_ms, max(w["media_delay_ms"] for w in msg["words"]))
        self._news.set()

    def sent(self, n_bytes: int) -> None:
        self.sent_ms += n_bytes / self.bytes_per_ms

    async def wait_for_room(self, receiver: asyncio.Task) -> None:
        while self.limit_ms is not None and self.sent_ms - self.consumed_ms > self.limit_ms and not receiver.done():
            self._news.clear()
            try:
                await asyncio.wait_for(self._news.wait(), self.stall_s)
            except TimeoutError:
                return


async def stream_chunks(
    url: str,
    chunks: AsyncIterator[bytes],
    start: dict,
    *,
    on_message: Callable[[dict], None] | None = None,
    token: str | None = None,
    open_timeout_s: float = 10.0,
) -> StreamResult:
    """Send ``start``, the chunks, ``stop``; return everything the server sent until it closed."""
    result = StreamResult()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with connect(
        stream_url(url), additional_headers=headers, open_timeout=open_timeout_s, max_size=None, compression=None
    ) as ws:
        await ws.send(json.dumps({"type": "start", **start}))
        ready = asyncio.Event()
        flow = _FlowControl(start)

        async def receive() -> None:
            try:
                async for raw in ws:
                    msg = json.loads(raw)
                    result.messages.append(msg)
                    flow.observe(msg)
                    if msg["type"] == "ready":
                        result.ready = msg
                        ready.set()
                    elif msg["type"] == "end":
                        result.end = msg
                    if on_message is not None:
                        on_message(msg)
            except ConnectionClosed:  # a close other than 1000/1001: the code is in the result
                pass
            finally:
                ready.set()

        receiver = asyncio.create_task(receive())
        await ready.wait()
        if result.ready is not None:
            try:
                async for chunk in chunks:
                    await flow.wait_for_room(receiver)
                    if receiver.done():
                        break
                    await ws.send(chunk)
                    flow.sent(len(chunk))
                if not receiver.done():
                    await ws.send(json.dumps({"type": "stop"}))
            except ConnectionClosed:
                pass
        await receiver
    result.close_code = ws.close_code
    result.close_reason = ws.close_reason or ""
    return result


async def stream_samples(
    url: str,
    samples: np.ndarray,
    *,
    sample_rate: int = 16000,
    encoding: str = "pcm_s16le",
    chunk_ms: float = 100.0,
    speed: float = 1.0,
    options: dict | None = None,
    on_message: Callable[[dict], None] | None = None,
    token: str | None = None,
) -> StreamResult:
    """Stream mono float samples in ``chunk_ms`` messages at ``speed`` x real time (0: no pacing)."""
    if speed < 0:
        raise StreamrtError(f"speed must be >= 0 (0 = as fast as possible), got {speed}", code="bad_config")
    start = {"sample_rate": sample_rate, "encoding": encoding, "channels": 1, **(options or {})}
    chunks = paced(pcm_chunks(samples, sample_rate, chunk_ms, encoding), chunk_ms / 1000, speed)
    return await stream_chunks(url, chunks, start, on_message=on_message, token=token)
