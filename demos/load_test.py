"""Load generator: N concurrent clients stream audio in real time; prints how late commits arrive.

    python demos/load_test.py --clients 50 --seconds 5                 # in-process server, counting model
    python demos/load_test.py --url ws://HOST:8765 --clients 20 --file speech.wav

Commit delivery lag of a word = when its commit reached the client - when the audio up to the word's
media_delay_ms had been sent (t0 + media_delay_ms / speed). It is the server's own delay (queueing,
scheduling, compute, transport) on top of what the policy chose to wait.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np


async def one_client(url: str, audio: np.ndarray, speed: float, lags: list[float], codes: list[int]) -> int:
    from streamrt.clients.ws_client import stream_samples

    t0 = time.perf_counter()

    def on_message(msg: dict) -> None:
        if msg["type"] == "commit":
            now = time.perf_counter()
            lags.extend(1000 * (now - t0) - w["media_delay_ms"] / speed for w in msg["words"])

    res = await stream_samples(url, audio, speed=speed, chunk_ms=100, on_message=on_message)
    codes.append(res.close_code)
    return len(res.words)


async def run(args) -> None:
    from streamrt.audio import load_audio

    audio = load_audio(args.file) if args.file else np.zeros(int(16000 * args.seconds), np.float32)
    server = None
    url = args.url
    if url is None:
        from streamrt.server.settings import ServerSettings
        from streamrt.server.ws import StreamServer
        from streamrt.testing import CountingModel

        server = StreamServer(CountingModel(), settings=ServerSettings(max_sessions=args.clients), port=0)
        await server.start()
        url = server.url
    lags: list[float] = []
    codes: list[int] = []
    t = time.perf_counter()
    words = await asyncio.gather(*(one_client(url, audio, args.speed, lags, codes) for _ in range(args.clients)))
    wall = time.perf_counter() - t
    if server is not None:
        stats = server.scheduler.stats()
        await server.stop()
        print(f"scheduler: {stats['steps']} steps, batch size mean {stats['batch_size_mean']} max {stats['batch_size_max']}")
    p = np.percentile(lags, [50, 90, 99]) if lags else [float("nan")] * 3
    print(f"{args.clients} clients x {len(audio) / 16000:.1f} s at {args.speed:g}x: {sum(words)} words in {wall:.1f} s; "
          f"close codes {sorted(set(codes))}")
    print(f"commit delivery lag ms: p50 {p[0]:.1f}  p90 {p[1]:.1f}  p99 {p[2]:.1f}  max {max(lags, default=float('nan')):.1f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="server (default: start one in-process on the counting model)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--file", default=None)
    ap.add_argument("--speed", type=float, default=1.0)
    asyncio.run(run(ap.parse_args()))
