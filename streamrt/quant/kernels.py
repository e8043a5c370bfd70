"""Quantization arithmetic and the torch CPU kernels that run it (pure functions, no modules).

What torch 2.13 CPU offers, and what this module uses (measured, see docs/quantization.md):

- ``torch.ops.aten._weight_int8pack_mm(x, w_int8[N, K], scales[N])``: int8 weight-only matmul.
  Vectorised for bfloat16 activations; with float32 activations it runs a slow scalar path, so the
  runtime modules cast activations to ``compute_dtype`` (bfloat16 by default).
- ``torch.ops.aten._convert_weight_to_int4pack_for_cpu`` + ``_weight_int4pack_mm_for_cpu``: int4
  group-wise weight-only matmul; N must be a multiple of 16, bfloat16 activations for the fast path.
  The packed layout is torch's own; rows are packed in independent blocks (64 rows on AVX-512), which
  ``int4_pack_block_rows`` detects so a prefix of rows can be sliced without re-packing.
- ``torch.ops.mkldnn._reorder_linear_weight`` + ``_linear_pointwise``: a bfloat16 GEMM on a weight
  reordered once into oneDNN's blocked layout. ``F.linear`` on a plain bfloat16 weight reorders it
  on every call; prepacked, a (17 x 384) @ (384 x 51864) vocabulary projection takes 2.0 ms instead
  of 4.5 ms and an encoder projection over 1600 rows 0.56 ms instead of 2.7 ms (same results).
- ``torch._int_mm(a_int8[M, K], b_int8[K, N]) -> int32``: used for int8 dynamic quantization with
  per-token activation scales (torch.ao's ``quantize_dynamic`` quantizes activations per tensor, not
  per token, and is deprecated in 2.13, so it is not used).

Each kernel has a pure-torch fallback (dequantize, then ``F.linear``) used when the op is missing or
when a call has many rows, where the packed kernels lose to a float GEMM (``dense_above_rows``).

Conventions: a weight is ``[out_features N, in_features K]``; int8 is symmetric per output channel
(``w ~= q * scale``, q in [-127, 127]); int4 is asymmetric per group of ``group_size`` input
columns (``w ~= (q - 8) * scale + zero``, q in [0, 15]; gpt-fast's and torch's convention).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

INT4_N_MULTIPLE = 16  # the int4 CPU kernel takes N (output rows) in multiples of 16
INT8_QMAX = 127


def has_op(name: str) -> bool:
    """True when ``torch.ops.aten.<name>`` exists in this torch build."""
    return hasattr(torch.ops.aten, name)


def has_int_mm() -> bool:
    return hasattr(torch, "_int_mm")


@functools.cache
def int_mm_is_exact() -> bool:
    """``torch._int_mm`` exists and sums int8 products exactly on this CPU. Where torch thinks the CPU
    has VNNI but oneDNN runs a narrower kernel (oneDNN capped below VNNI, e.g. ``ONEDNN_MAX_CPU_ISA``
    set to AVX2 on a VNNI CPU), pairs of products saturate at int16 and the sums come out wrong by
    thousands; then the exact integer path is used instead. Probed once, at first use (a 16 x 64 x
    32 product of extreme values), never at import."""
    if not has_int_mm():
        return False
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(-INT8_QMAX, INT8_QMAX + 1, (16, 64), generator=gen, dtype=torch.int8)
    b = torch.randint(-INT8_QMAX, INT8_QMAX + 1, (64, 32), generator=gen, dtype=torch.int8)
    a[0], b[:, 0] = INT8_QMAX, INT8_QMAX  # one all-extreme product: 64 x 127 x 127
    exact = a.to(torch.int64) @ b.to(torch.int64)
    try:
        return torch.equal(torch._int_mm(a, b).to(torch.int64), exact)
    except RuntimeError:
        return False


# ---------------------------------------------------------------------------------------------- int8


def quantize_int8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel: returns ``(q int8 [N, K], scale float32 [N])``."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / INT8_QMAX
    q = torch.round(w / scale[:, None]).clamp(-INT8_QMAX, INT8_QMAX).to(torch.int8)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale[:, None]


def int8_weight_only_mm(
    x2d: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, scale_c: torch.Tensor,
    compute_dtype: torch.dtype, dense_above_rows: int | None,
) -> torch.Tensor:
    """``x2d @ dequant(q).T`` in float32 (no bias). ``scale_c`` is ``scale`` in ``compute_dtype``."""
    rows = x2d.shape[0]
    if not has_op("_weight_int8pack_mm") or (dense_above_rows is not None and rows > dense_above_rows):
        return F.linear(x2d, q.to(x2d.dtype)) * scale
    y = torch.ops.aten._weight_int8pack_mm(x2d.to(compute_dtype), q, scale_c)
    return y.to(x2d.dtype)


def quantize_per_token_int8(x2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row (token): returns ``(q int8 [M, K], scale float32 [M, 1])``."""
    scale = x2d.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / INT8_QMAX
    q = torch.round(x2d / scale).clamp(-INT8_QMAX, INT8_QMAX).to(torch.int8)
    return q, scale


def int8_dynamic_mm(x2d: torch.Tensor, q_t: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per-token int8 activations times per-channel int8 weights ``q_t [K, N]``, int32 accumulation."""
    xq, xs = quantize_per_token_int8(x2d.float())
    if int_mm_is_exact():
        acc = torch._int_mm(xq, q_t)
    else:  # exact integer reference (slow): int32 products summed in int64 then narrowed
        acc = (xq.to(torch.int64) @ q_t.to(torch.int64)).to(torch.int32)
    return (acc.float() * (xs * scale)).to(x2d.dtype)


def has_fbgemm() -> bool:
    """torch was built with fbgemm (its x86 quantized engine), which runs ``fbgemm_fp16_linear``."""
    return "fbgemm" in torch.backends.quantized.supported_engines


def fbgemm_fp16_prepack(weight: torch.Tensor, bias: torch.Tensor | None) -> Any:
    """fbgemm's packed float16 form of a float32 weight ``[N, K]`` and bias (built once)."""
    return torch.ops.quantized.linear_prepack_fp16(weight.detach().float().contiguous(), bias)


def fbgemm_fp16_linear(x2d: torch.Tensor, packed: Any) -> torch.Tensor:
    """float32 activations times float16 weights, float32 accumulation (fbgemm's FP16 GEMM, AVX2
    and up): half the weight bytes a float32 GEMM reads, float32-level results (rel. error ~2e-4)."""
    return torch.ops.quantized.linear_dynamic_fp16(x2d.float().contiguous(), packed)


# ---------------------------------------------------------------------------------------------- int4


def quantize_int4_groupwise(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric int4 per group: returns ``(codes uint8 [N, K] in 0..15, scale [N, G], zero [N, G])``.

    ``zero`` is the value code 8 stands for, so ``w ~= (q - 8) * scale + zero`` (torch's layout).
    K must be a multiple of ``group_size`` (the caller checks).
    """
    w = weight.detach().float()
    n, k = w.shape
    groups = w.reshape(n, k // group_size, group_size)
    lo = groups.amin(dim=-1)
    hi = groups.amax(dim=-1)
    scale = ((hi - lo) / 15).clamp(min=1e-12)
    codes = torch.round((groups - lo[..., None]) / scale[..., None]).clamp(0, 15)
    zero = lo + 8 * scale
    return codes.to(torch.uint8).reshape(n, k), scale, zero


def dequantize_int4(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """Float32 weight ``[N, K]`` from codes ``[N, K]`` and per-group ``scale``/``zero`` ``[N, G]``."""
    n, k = codes.shape
    g = scale.shape[1]
    q = codes.float().reshape(n, g, k // g)
    return ((q - 8) * scale[..., None] + zero[..., None]).reshape(n, k)


def nibble_pack(codes: torch.Tensor) -> torch.Tensor:
    """Portable storage: two 4-bit codes per byte along K (low nibble first). K must be even."""
    c = codes.to(torch.uint8)
    return c[:, 0::2] | (c[:, 1::2] << 4)


def nibble_unpack(packed: torch.Tensor) -> torch.Tensor:
    lo = packed & 0xF
    hi = packed >> 4
    return torch.stack([lo, hi], dim=-1).reshape(packed.shape[0], packed.shape[1] * 2)


def int4_kernel_pack(codes: torch.Tensor) -> torch.Tensor:
    """Pack codes ``[N, K]`` (N % 16 == 0) into torch's CPU int4 layout."""
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32).contiguous(), 2)


def int4_scales_and_zeros(scale: torch.Tensor, zero: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """torch's ``[G, N, 2]`` scale/zero tensor from ``[N, G]`` scale and zero."""
    return torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous().to(dtype)


def has_int4_kernel() -> bool:
    return has_op("_weight_int4pack_mm_for_cpu") and has_op("_convert_weight_to_int4pack_for_cpu")


def int4_mm(
    x2d: torch.Tensor, packed: torch.Tensor, group_size: int, scales_and_zeros: torch.Tensor,
    compute_dtype: torch.dtype,
) -> torch.Tensor:
    """Run torch's int4 CPU kernel; returns ``x2d.dtype``."""
    y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2d.to(compute_dtype), packed, group_size, scales_and_zeros)
    return y.to(x2d.dtype)


@functools.cache
def int4_pack_block_rows() -> int | None:
    """Smallest row count B such that packing rows [0, B) and [B, ...) separately equals slicing the
    packed whole (so a prefix of B-row blocks can be taken from one packed tensor); None if none of
    16..256 works. Probed once on first use (a few small packs), never at import."""
    if not has_int4_kernel():
        return None
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (512, 128), generator=gen, dtype=torch.int32)
    whole = int4_kernel_pack(codes)
    for block in (16, 32, 64, 128, 256):
        for cut in (block, 2 * block):
            head, tail = int4_kernel_pack(codes[:cut]), int4_kernel_pack(codes[cut:])
            if not (torch.equal(whole[:cut], head) and torch.equal(whole[cut:], tail)):
                break
        else:
            return block
    return None


def bf16_prepack(weight_bf16: torch.Tensor, batch_hint: int = 32) -> torch.Tensor | None:
    """The bfloat16 ``[N, K]`` weight in oneDNN's blocked layout for ``bf16_packed_mm``, or None where
    this torch has no oneDNN linear or it fails on this CPU (callers fall back to ``F.linear``)."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return None
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight_bf16, batch_hint)
        probe = torch.zeros(1, weight_bf16.shape[1], dtype=torch.bfloat16)
        bf16_packed_mm(probe, packed)
    except (RuntimeError, NotImplementedError):
        return None
    return packed


# oneDNN sets up a kernel for every new row count (~1 ms for a 384x384 weight, ~4 ms for Whisper's
# vocabulary projection), more than the product itself costs at a few hundred rows; a decoder's row
# counts change every step. Up to this many rows the input is padded to one of a few row counts
# (``gemm_rows``), whose kernels are set up once; above it the product outweighs the set-up
PAD_ROWS_UP_TO = 512


def bf16_packed_mm(x2d_bf16: torch.Tensor, packed: torch.Tensor, bias_bf16: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W.T (+ bias)`` in bfloat16 on a weight from ``bf16_prepack``."""
    rows = x2d_bf16.shape[0]
    padded = gemm_rows(rows) if rows <= PAD_ROWS_UP_TO else rows
    if padded == rows:
        return torch.ops.mkldnn._linear_pointwise(x2d_bf16, packed, bias_bf16, "none", [], "")
    x2d_bf16 = torch.nn.functional.pad(x2d_bf16, (0, 0, 0, padded - rows))
    return torch.ops.mkldnn._linear_pointwise(x2d_bf16, packed, bias_bf16, "none", [], "")[:rows]


def gemm_rows(rows: int) -> int:
    """``rows`` rounded up to one of 8 row counts per octave (at most 1/8 more rows); exact up to 16."""
    if rows <= 16:
        return rows
    return round_up(rows, 1 << (rows.bit_length() - 4))


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
