"""Protocol v1 by hand with nothing but websockets and numpy: what an application does.

    python demos/raw_protocol.py speech.wav --url ws://127.0.0.1:8765
"""

from __future__ import annotations

import argparse
import asyncio
import json

import numpy as np
import soundfile as sf
from websockets.asyncio.client import connect


async def run(path: str, url: str) -> None:
    audio, rate = sf.read(path, dtype="int16", always_2d=True)  # any rate/channels: the server resamples
    async with connect(url.rstrip("/") + "/v1/stream") as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": rate, "encoding": "pcm_s16le", "channels": audio.shape[1]}))
        print(json.loads(await ws.recv()))  # ready (or an error naming the problem)

        async def send() -> None:
            step = rate // 10  # 100 ms per message, in real time
            for i in range(0, len(audio), step):
                await ws.send(np.ascontiguousarray(audio[i : i + step]).tobytes())
                await asyncio.sleep(0.1)
            await ws.send(json.dumps({"type": "stop"}))

        sender = asyncio.create_task(send())
        async for raw in ws:  # partial / commit / error / end; the server closes after end
            msg = json.loads(raw)
            if msg["type"] == "commit":
                print("commit:", msg["text"], [(w["text"], w["media_delay_ms"]) for w in msg["words"]])
            elif msg["type"] in ("error", "end"):
                print(msg)
        await sender
    print("closed with", ws.close_code)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file")
    p.add_argument("--url", default="ws://127.0.0.1:8765")
    a = p.parse_args()
    asyncio.run(run(a.file, a.url))
