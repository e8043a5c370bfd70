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


def test_greedy_logprobs_in_row_blocks_with_a_mask_equal_the_whole_matrix_at_once():
    # 21 rows run as blocks of LOGITS_BLOCK_ROWS (the last one short); bfloat16 logits are widened
    # block by block; the mask is added to each block; the caller's logits are left as they were
    from streamrt.decoding import numerics

    torch.manual_seed(1)
    z = (torch.randn(21, 3000) * 30).bfloat16()
    mask = torch.zeros(3000)
    mask[2500:] = float("-inf")
    mask[[5, 6]] = float("-inf")
    z[12, 5] = 900.0  # a masked token that would win without the mask (in the second block)
    before = z.clone()
    toks, lps = greedy_logprobs(z, mask)
    full = z.float() + mask
    ref = torch.log_softmax(full.double(), dim=-1)
    assert numerics.LOGITS_BLOCK_ROWS < 21 and torch.equal(z, before)
    assert toks == full.argmax(-1).tolist() and toks[12] != 5
    for row, (t, lp) in enumerate(zip(toks, lps)):
        assert math.isclose(lp, float(ref[row, t]), rel_tol=1e-5, abs_tol=1e-6)
