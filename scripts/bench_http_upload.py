"""The same recordings through POST /v1/audio/transcriptions (the official openai client) and through
the WebSocket protocol at full speed (`streamrt stream --speed 0`), alternated on one in-process
server with tiny.en and the default preset; prints wall time, WER and the highest degradation level
the scheduler's ladder reached during each request (docs/benchmarks.md, "HTTP uploads"). Uploads are
background work (docs/scheduler.md); the WebSocket client is timed twice, as a real-time session
(the default) and with `"background": true` (`streamrt stream --speed 0 --background`).

    PYTHONPATH=. .venv/bin/python scripts/bench_http_upload.py [ROUNDS]
"""

from __future__ import annotations

import asyncio
import sys
import time


async def main(rounds: int) -> None:
    import openai

    from metrics.quality import wer
    from streamrt.audio import load_audio
    from streamrt.clients.ws_client import stream_samples
    from streamrt.presets import load_model
    from streamrt.server.asgi_server import AsgiServer
    from streamrt.server.settings import ServerSettings

    refs = {row.split("\t")[0]: row.split("\t")[2] for row in open("data/real.tsv").read().splitlines()[1:]}
    async with AsgiServer(load_model("tiny.en"), settings=ServerSettings(model_name="tiny.en"), port=0) as server:
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="-", max_retries=0, timeout=600)
        for name, ref in refs.items():
            path = f"data/real/{name}.wav"
            audio, data = load_audio(path, 16000), open(path, "rb").read()
            for i in range(rounds):
                out = []
                for kind in ("upload", "ws --speed 0", "ws --speed 0 --background"):
                    ladder = server.scheduler.degradation
                    top, seen = ladder.level, len(ladder_history(server))
                    t0 = time.perf_counter()
                    if kind == "upload":
                        text = (await client.audio.transcriptions.create(model="tiny.en", file=(f"{name}.wav", data))).text
                    else:
                        options = {"background": True} if kind.endswith("--background") else {}
                        text = (await stream_samples(server.url, audio, speed=0, chunk_ms=200, options=options)).text
                    seconds = time.perf_counter() - t0
                    top = max([top] + [level for _, level in ladder_history(server)[seen:]])
                    out.append(f"{kind} {seconds:.2f} s, WER {wer([text], [ref]):.1f} %, ladder up to {top}")
                print(f"{name} {len(audio) / 16000:.1f} s, round {i}: " + "; ".join(out), flush=True)


def ladder_history(server) -> list:
    return server.scheduler.stats()["degradation"]["history"]


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2))
