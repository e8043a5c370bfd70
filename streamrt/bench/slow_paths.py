"""Two torch CPU slow paths the decoder avoids, timed side by side (medians of interleaved runs).

    python -m streamrt.bench.slow_paths [--rows 96] [--repeats 30] [--threads 2]

- ``exp`` on arguments below float32's normal range (``streamrt.decoding.numerics``):
  ``torch.logsumexp`` of vocabulary-sized logits against the floored reduction ``greedy_logprobs`` uses.
- A bfloat16 GEMM on a plain weight, which oneDNN reorders on every call, against the weight
  prepacked once (``streamrt.quant.kernels.bf16_prepack``): the vocabulary projection and an encoder
  projection over 1600 rows (32 streams x 50 frames).

Figures move with the shared host's memory bandwidth; the interleaving keeps the pairs comparable.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from streamrt.decoding.numerics import exp_floored
from streamrt.quant import kernels as K


def _paired(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median milliseconds of ``a`` and ``b``, run alternately."""
    ta, tb = [], []
    for f in (a, b):
        f()
    for _ in range(repeats):
        for f, out in ((a, ta), (b, tb)):
            t = time.perf_counter()
            f()
            out.append(time.perf_counter() - t)
    return float(np.median(ta)) * 1e3, float(np.median(tb)) * 1e3


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=96, help="logit rows (tokens of one decode pass)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab, d = 51864, 384
    w = torch.randn(vocab, d) * 0.05
    logits = F.linear(torch.randn(args.rows, d) * 20, w)  # spans ~100 below each row's maximum

    def floored():
        m = logits.amax(-1, keepdim=True)
        return exp_floored(logits - m).sum(-1).log_() + m[:, 0]

    plain, fast = _paired(lambda: torch.logsumexp(logits, -1), floored, args.repeats)
    print(f"log-sum-exp of ({args.rows}, {vocab}) logits: torch.logsumexp {plain:.2f} ms, floored {fast:.2f} ms")

    for name, rows, (n_out, n_in) in (("vocabulary projection", 17, (vocab, d)),
                                       ("encoder fc1 (32 streams x 50 frames)", 1600, (1536, d))):
        wb = (torch.randn(n_out, n_in) * 0.05).bfloat16()
        packed = K.bf16_prepack(wb)
        x = torch.randn(rows, n_in).bfloat16()
        if packed is None:
            print(f"{name}: no oneDNN prepacked linear in this torch/CPU")
            continue
        plain, fast = _paired(lambda: F.linear(x, wb), lambda: K.bf16_packed_mm(x, packed), args.repeats)
        print(f"{name}, {rows} rows, bfloat16: F.linear {plain:.2f} ms, prepacked {fast:.2f} ms")


if __name__ == "__main__":
    main()
