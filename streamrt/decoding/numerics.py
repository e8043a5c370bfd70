"""Exponentials without torch's CPU underflow slow path, and greedy choices built on them.

torch's vectorised CPU ``exp`` (2.13) takes a slow path for every element whose result is below
float32's smallest normal number, that is for arguments under about -87.3 (``-inf`` included). On a
(96, 51864) block of vocabulary logits, ``torch.logsumexp`` took 80 ms where the same reduction on
clamped arguments took 3.7 ms (``python -m streamrt.bench.numerics`` prints the figures). Logits and
masked attention scores are mostly such elements: after the maximum, nearly every other entry is
far below it.

``exp_floored`` clamps the arguments at ``EXP_FLOOR`` first. Where the true result is below
exp(EXP_FLOOR) = 1.6e-38 it returns that instead: an absolute error under 1.7e-38 per element,
below float32's resolution of any sum that holds one normal-sized term.
"""

from __future__ import annotations

import torch

#: arguments below this are raised to it before ``exp`` (exp(-87) = 1.6e-38, float32's normal range
#: ends at 1.18e-38)
EXP_FLOOR = -87.0


def exp_floored(x: torch.Tensor) -> torch.Tensor:
    """``exp(max(x, EXP_FLOOR))``: NaN stays NaN, ``-inf`` gives 1.6e-38 instead of 0."""
    return x.clamp(min=EXP_FLOOR).exp_()


#: rows of logits post-processed together: 8 rows of a 51864-token vocabulary in float32 are 1.7 MB,
#: within the L2 cache, so the mask, the shift, the exp and the sum pass over the block there
#: instead of each reading and writing the whole (rows, vocab) matrix in memory
LOGITS_BLOCK_ROWS = 8


def greedy_logprobs(logits: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[list[int], list[float]]:
    """Each row's argmax token and its log-probability under ``log_softmax`` (rows of ``logits``,
    float32 or bfloat16, (N, vocab), plus the additive ``mask`` (vocab,) if given); a row's maximum
    is its greedy token, so its log-probability is ``-log(sum(exp(z - max)))``. ``logits`` is not
    modified; it is read once, ``LOGITS_BLOCK_ROWS`` rows at a time."""
    toks: list[int] = []
    lps: list[float] = []
    for a in range(0, logits.shape[0], LOGITS_BLOCK_ROWS):
        z = logits[a : a + LOGITS_BLOCK_ROWS].to(torch.float32, copy=True)
        if mask is not None:
            z += mask
        tok = z.numpy().argmax(-1)  # numpy's argmax is ~10x torch's on CPU here
        z -= z.gather(1, torch.from_numpy(tok)[:, None])
        lp = z.clamp_(min=EXP_FLOOR).exp_().sum(-1).log_().neg_()
        toks += tok.tolist()
        lps += lp.tolist()
    return toks, lps


def topk_logprobs(logits: torch.Tensor, mask: torch.Tensor | None, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``k`` most likely tokens under ``log_softmax(logits + mask)``, best first:
    (log-probabilities (N, k) float32, ids (N, k)); masked tokens that make it into the k have
    ``-inf``. Like ``greedy_logprobs``, the logits are read ``LOGITS_BLOCK_ROWS`` rows at a time, the
    normaliser summed over floored exponentials; for k = 1 the two give the same numbers."""
    vals, ids = [], []
    for a in range(0, logits.shape[0], LOGITS_BLOCK_ROWS):
        z = logits[a : a + LOGITS_BLOCK_ROWS].to(torch.float32, copy=True)
        if mask is not None:
            z += mask
        top, idx = z.topk(k, dim=-1)
        z -= top[:, :1]
        vals.append(top - top[:, :1] - z.clamp_(min=EXP_FLOOR).exp_().sum(-1, keepdim=True).log_())
        ids.append(idx)
    if not vals:
        return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.long)
    return torch.cat(vals), torch.cat(ids)
