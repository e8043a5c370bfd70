"""The host a benchmark runs on: how much compute and memory bandwidth it gives right now."""

from __future__ import annotations

import time


def host_speed(threads: int = 2) -> dict:
    """What this (shared) machine gives right now: float32 GEMM GFLOP/s on ``threads`` threads and
    memory copy GB/s, about 0.5 s of probing. On a shared host both move by 2x within minutes, and
    the stream capacity with them: read a run's figures against these."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
        a @ b
        t = time.perf_counter()
        for _ in range(20):
            a @ b
        gflops = 20 * 2 * 1024**3 / (time.perf_counter() - t) / 1e9
        x = torch.empty(16 * 1024 * 1024)  # 64 MB: past the caches
        x.clone()
        t = time.perf_counter()
        for _ in range(8):
            x.clone()
        copy = 8 * 2 * x.numel() * 4 / (time.perf_counter() - t) / 1e9  # read + write
    finally:
        torch.set_num_threads(before)
    return {"matmul_gflops": round(gflops), "copy_gb_s": round(copy, 1)}

