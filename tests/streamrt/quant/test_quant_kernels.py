"""Quantization arithmetic and torch's packed int4 layout (streamrt.quant.kernels)."""

from __future__ import annotations

import pytest
import torch

from streamrt.quant import kernels as K
from streamrt.quant.modules import Int4WeightOnlyLinear
from streamrt.quant.precision import detect_cpu


def reference_int4(weight: torch.Tensor, group_size: int) -> torch.Tensor:
    """Group-wise asymmetric int4 quantize/dequantize written out one group at a time."""
    out = torch.empty_like(weight)
    for row in range(weight.shape[0]):
        for start in range(0, weight.shape[1], group_size):
            g = weight[row, start : start + group_size]
            lo, hi = g.min(), g.max()
            scale = torch.clamp((hi - lo) / 15, min=1e-12)
            q = torch.clamp(torch.round((g - lo) / scale), 0, 15)
            out[row, start : start + group_size] = (q - 8) * scale + (lo + 8 * scale)
    return out


@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_int4_dequantize_equals_reference_quantize_dequantize(group_size):
    torch.manual_seed(group_size)
    w = torch.randn(24, 256)
    linear = torch.nn.Linear(256, 24)
    linear.weight.data = w
    m = Int4WeightOnlyLinear.from_float(linear, group_size=group_size)
    assert torch.equal(m.dequantized_weight(), reference_int4(w, group_size))


def test_nibble_pack_round_trip():
    codes = torch.randint(0, 16, (7, 10), dtype=torch.uint8)
    packed = K.nibble_pack(codes)
    assert packed.shape == (7, 5)
    assert torch.equal(K.nibble_unpack(packed), codes)


@pytest.mark.skipif(not K.has_int4_kernel(), reason="torch build has no int4 CPU kernel")
@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_torch_int4_pack_keeps_every_code(group_size):
    """Run the packed kernel in float32 on the identity: each output is one dequantized weight.
    A code lost or moved in packing would be off by at least one scale step."""
    torch.manual_seed(0)
    n, k = 80, 256
    codes, scale, zero = K.quantize_int4_groupwise(torch.randn(n, k), group_size)
    packed = K.int4_kernel_pack(codes)
    sz = K.int4_scales_and_zeros(scale, zero, torch.float32)
    y = K.int4_mm(torch.eye(k), packed, group_size, sz, torch.float32)
    err = (y.T - K.dequantize_int4(codes, scale, zero)).abs().max()
    assert err < scale.min() / 100


@pytest.mark.skipif(not K.has_int4_kernel(), reason="torch build has no int4 CPU kernel")
def test_int4_pack_block_rows_allows_prefix_slicing():
    block = K.int4_pack_block_rows()
    if block is None:
        pytest.skip("this CPU's int4 layout has no row blocks; FlexiQ re-packs instead")
    codes = torch.randint(0, 16, (4 * block, 64), dtype=torch.int32)
    assert torch.equal(K.int4_kernel_pack(codes)[: 2 * block], K.int4_kernel_pack(codes[: 2 * block]))


def test_int8_per_channel_and_per_token_scales():
    w = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0], [254.0, 1.0, -127.0]])
    q, s = K.quantize_int8_per_channel(w)
    assert q[0].tolist() == [64, -127, 32] and q[2, 0] == 127
    assert torch.allclose(s, torch.tensor([2 / 127, 1e-12 / 127, 2.0]))
    assert not torch.isnan(K.dequantize_int8(q, s)).any()
    xq, xs = K.quantize_per_token_int8(torch.tensor([[0.5, -1.0], [3.0, 1.5]]))
    assert xq.tolist() == [[64, -127], [127, 64]] and torch.allclose(xs.squeeze(1), torch.tensor([1 / 127, 3 / 127]))


def test_int8_dynamic_mm_matches_integer_arithmetic():
    torch.manual_seed(1)
    x = torch.randn(5, 64)
    q, s = K.quantize_int8_per_channel(torch.randn(48, 64))
    xq, xs = K.quantize_per_token_int8(x)
    expected = (xq.double() @ q.double().T) * xs.double() * s.double()
    assert torch.allclose(K.int8_dynamic_mm(x, q.t().contiguous(), s).double(), expected, rtol=1e-6, atol=1e-6)


def test_gemm_rows_pads_to_few_row_counts_and_at_most_an_eighth():
    padded = [K.gemm_rows(r) for r in range(1, 513)]
    assert padded[:16] == list(range(1, 17))
    assert all(r <= p <= r + r // 8 for r, p in zip(range(1, 513), padded))
    # 16 exact counts, then 8 per octave: the set of kernels oneDNN sets up stays small
    assert len(set(padded)) == 16 + 8 * 5


@pytest.mark.parametrize("rows", [1, 17, 83, 300, 600])
def test_bf16_packed_mm_with_padded_rows_gives_the_rows_asked_for(rows):
    torch.manual_seed(rows)
    w = torch.randn(96, 64).bfloat16()
    packed = K.bf16_prepack(w)
    if packed is None:
        pytest.skip(f"oneDNN runs no bfloat16 GEMM on this CPU ({detect_cpu().label}): nothing to prepack")
    bias = torch.randn(96).bfloat16()
    x = torch.randn(rows, 64).bfloat16()
    y = K.bf16_packed_mm(x, packed, bias)
    assert y.shape == (rows, 96) and y.is_contiguous()
    ref = x.float() @ w.float().T + bias.float()
    assert torch.allclose(y.float(), ref, rtol=2e-2, atol=0.15)
    # each row on its own: padding rows must not change any row's result
    assert torch.equal(K.bf16_packed_mm(x[-1:], packed, bias), y[-1:])
