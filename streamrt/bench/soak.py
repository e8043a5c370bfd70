"""The server under many short sessions for a long time: does its memory grow? (issue 17, item 10)

Not a test: it runs on the wall clock and prints figures. The server (a ``StreamServer`` on the
counting model, no weights) runs in a child process so that its resident memory is its own; the
parent cycles ``concurrency`` clients, each one short session (start, ``audio_s`` of PCM in 100 ms
messages, stop, read to ``end``). Every ``report_every`` sessions the child reports its RSS, glibc's
heap in use and free (``mallinfo2``), pymalloc's blocks in use (every live Python object), the
objects gc tracks and the ``Session`` objects still alive; with ``trim`` it first calls
glibc's ``malloc_trim(0)``, which returns free heap pages to the OS (so RSS then shows what is
really held rather than what the allocator keeps for reuse).

    streamrt bench soak --sessions 4000 --concurrency 8 --report-every 500
    MALLOC_ARENA_MAX=2 streamrt bench soak ...     # the child inherits the environment
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import multiprocessing as mp
import sys
import time
import tracemalloc

import numpy as np


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mallinfo() -> dict:
    """glibc's heap: bytes in use by malloc callers (C and Python's big objects) and bytes free
    inside the heap (kept by the allocator); empty where there is no mallinfo2 (not glibc >= 2.33)."""
    try:
        f = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return {}
    f.restype = _MallInfo2
    m = f()
    return {"malloc_used_kb": (m.uordblks + m.hblkhd) // 1024, "malloc_free_kb": m.fordblks // 1024}


def _malloc_trim() -> bool:
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):  # not glibc
        return False


def _report(server, trim: bool) -> dict:
    from streamrt.session import Session

    gc.collect()
    if trim:
        _malloc_trim()
    sessions_alive = sum(1 for o in gc.get_objects() if type(o) is Session)
    return {
        "rss_kb": _rss_kb(),
        **_mallinfo(),
        "py_blocks": sys.getallocatedblocks(),  # pymalloc blocks in use: every live Python object
        "gc_objects": len(gc.get_objects()),
        "sessions_alive": sessions_alive,
        "sessions_started": server.stats.sessions_started,
        "connections_active": server.stats.connections_active,
    }


def _serve(conn, trim: bool) -> None:
    """The child: serve until the parent says "quit"; answer "report" with ``_report``."""
    from streamrt.server.settings import ServerSettings
    from streamrt.server.ws import StreamServer
    from streamrt.testing import CountingModel

    async def main() -> None:
        server = StreamServer(CountingModel(), settings=ServerSettings(max_sessions=None), port=0)
        await server.start()
        conn.send(server.port)
        loop = asyncio.get_running_loop()
        base = None
        while True:
            msg = await loop.run_in_executor(None, conn.recv)
            if msg == "quit":
                break
            if msg == "trace":  # from now on, allocations are traced (about 2x slower)
                tracemalloc.start(8)
                base = tracemalloc.take_snapshot()
            report = _report(server, trim)
            if base is not None and msg == "report":
                diff = tracemalloc.take_snapshot().compare_to(base, "traceback")
                report["traced_growth"] = [
                    f"{d.size_diff / 1024:+.1f} kB in {d.count_diff:+d} blocks at "
                    + " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in list(d.traceback)[::-1][:5])
                    for d in diff[:6]
                ]
            conn.send(report)
        await server.stop()

    asyncio.run(main())


async def _one_session(url: str, pcm: bytes, chunk_bytes: int) -> int:
    from websockets.asyncio.client import connect

    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}))
        for i in range(0, len(pcm), chunk_bytes):
            await ws.send(pcm[i : i + chunk_bytes])
        await ws.send('{"type":"stop"}')
        words = 0
        async for raw in ws:
            msg = json.loads(raw)
            if msg["type"] == "end":
                words = msg["words"]
    return words


async def _drive(url: str, n: int, concurrency: int, pcm: bytes, on_batch) -> None:
    done = 0
    while done < n:
        k = min(concurrency, n - done)
        await asyncio.gather(*(_one_session(url, pcm, 3200) for _ in range(k)))
        done += k
        await on_batch(done)


def run_soak(sessions: int, concurrency: int, audio_s: float, report_every: int, trim: bool,
             trace: bool = False) -> list[dict]:
    """Run the soak; return one report per ``report_every`` sessions (and one before the first).
    ``trace``: from the first report after warm-up on, the server traces its Python allocations and
    each report lists where traced memory grew most since (tracemalloc)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child, trim), daemon=True)
    proc.start()
    try:
        port = parent.recv()
        url = f"ws://127.0.0.1:{port}/v1/stream"
        t = np.arange(int(16000 * audio_s)) / 16000.0
        pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()
        reports: list[dict] = []
        t0 = time.monotonic()

        def report(done: int) -> None:
            parent.send("trace" if trace and len(reports) == 1 else "report")
            r = {"sessions": done, "elapsed_s": round(time.monotonic() - t0, 1), **parent.recv()}
            reports.append(r)
            print(json.dumps(r), flush=True)

        next_at = [report_every]

        async def on_batch(done: int) -> None:
            if done >= next_at[0] or done == sessions:
                await asyncio.sleep(0.3)  # the server closes the links it just ended
                report(done)
                next_at[0] = done + report_every

        report(0)
        asyncio.run(_drive(url, sessions, concurrency, pcm, on_batch))
        parent.send("quit")
        proc.join(30)
        return reports
    finally:
        if proc.is_alive():
            proc.kill()


def register(app) -> None:
    """Add ``soak`` to the ``streamrt bench`` typer app (called from streamrt/cli/bench.py)."""
    import typer

    @app.command("soak")
    def soak_cmd(
        sessions: int = typer.Option(4000, help="short sessions in all"),
        concurrency: int = typer.Option(8, help="sessions open at once"),
        audio_s: float = typer.Option(2.0, help="seconds of audio per session (sent as fast as possible)"),
        report_every: int = typer.Option(500, help="sessions between two reports"),
        trim: bool = typer.Option(False, help="call malloc_trim(0) in the server before each report"),
        trace: bool = typer.Option(False, help="trace the server's Python allocations after warm-up (tracemalloc)"),
    ) -> None:
        """Many short sessions through a counting-model server; prints its RSS, gc objects and live
        Session objects every --report-every sessions (JSON lines), then the growth per 1000 sessions."""
        reports = run_soak(sessions, concurrency, audio_s, report_every, trim, trace)
        if len(reports) >= 3:
            a, b = reports[1], reports[-1]  # from the first report after warm-up
            per_k = (b["rss_kb"] - a["rss_kb"]) / max(1, b["sessions"] - a["sessions"]) * 1000
            typer.echo(f"RSS {a['rss_kb']} -> {b['rss_kb']} kB from session {a['sessions']} to {b['sessions']}: "
                       f"{per_k:+.1f} kB per 1000 sessions; Session objects alive at the end: {b['sessions_alive']}")
