"""exp without the CPU underflow slow path, and greedy choices on it (streamrt.decoding.numerics)."""

from __future__ import annotations

import math

import torch

from streamrt.decoding.numerics import EXP_FLOOR, exp_floored, greedy_logprobs


def test_exp_floored_equals_exp_down_to_the_floor_and_stays_tiny_below_it():
    x = torch.tensor([3.0, 0.0, -10.0, -86.9, -87.5, -300.0, float("-inf"), float("nan")])
    y = exp_floored(x)
    assert torch.equal(y[:4], torch.exp(x[:4]))
    assert bool((y[4:7] > 0).all()) and bool((y[4:7] <= math.exp(EXP_FLOOR) * 1.0001).all())
    assert math.isnan(float(y[7]))
    assert torch.equal(x[6:7], torch.tensor([float("-inf")]))  # the input is not modified


def test_greedy_logprobs_match_log_softmax_on_wide_logits_with_masked_tokens():
    torch.manual_seed(0)
    z = torch.randn(12, 5000) * 40  # real logits span far below the row's maximum
    z[:, 4000:] = float("-inf")  # masked tokens (timestamps, suppressed ids)
    z[3, 17] = 500.0  # one certain row: its log-probability is 0
    toks, lps = greedy_logprobs(z)
    ref = torch.log_softmax(z.double(), dim=-1)
    assert toks == z.argmax(-1).tolist()
    for row, (t, lp) in enumerate(zip(toks, lps)):
        assert math.isclose(lp, float(ref[row, t]), rel_tol=1e-5, abs_tol=1e-6)
    assert toks[3] == 17 and abs(lps[3]) < 1e-6
