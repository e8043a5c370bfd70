"""bfloat16 Linear: weights stored in bfloat16, the GEMM in bfloat16 (oneDNN; AMX tiles on CPUs
that have them), inputs and outputs float32 so the rest of the model is unchanged.

Not an integer scheme, but the cheapest accurate one on CPUs with AMX-BF16 / AVX512-BF16: on this
machine (Xeon with AMX) a (32 x 384) @ (384 x 51864) vocabulary projection takes ~6 ms instead of
~19 ms in float32 and an encoder fc1 over 1600 rows ~1.4 ms instead of ~14 ms, at a relative
output error of ~0.3 % (8-bit mantissa). Without bfloat16 hardware torch falls back to a slow
path: measure before using it there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from streamrt.quant.modules import QuantizedLinear


class BFloat16Linear(QuantizedLinear):
    """``y = linear(x.bfloat16(), W_bf16).float() + bias`` for calls of more than ``float32_up_to_rows``
    rows; smaller calls (one decoder token of a few streams) run in float32 on the float weight,
    kept as well, because oneDNN's bfloat16 path costs more than float32 there (measured: 384x384,
    1 row: 0.17 ms vs 0.02 ms). ``dense_above_rows`` is unused."""

    scheme = "bf16"

    def __init__(self, in_features: int, out_features: int, bias: bool, *, float32_up_to_rows: int = 4, **settings):
        super().__init__(in_features, out_features, bias, **settings)
        self.float32_up_to_rows = float32_up_to_rows
        self.register_buffer("weight_bf16", torch.zeros(out_features, in_features, dtype=torch.bfloat16))
        self.register_buffer("weight_f32", torch.zeros(out_features, in_features))

    @classmethod
    def from_float(cls, linear: nn.Linear, **settings) -> BFloat16Linear:
        m = cls(linear.in_features, linear.out_features, linear.bias is not None, **settings)
        m.weight_bf16 = linear.weight.detach().to(torch.bfloat16).clone()
        m.weight_f32 = linear.weight.detach().float().clone()
        if linear.bias is not None:
            m.bias = linear.bias.detach().float().clone()
        return m

    def _build_runtime(self) -> bool:
        return True

    def _mm(self, x2d: torch.Tensor, runtime: bool) -> torch.Tensor:
        if x2d.shape[0] <= self.float32_up_to_rows:
            return F.linear(x2d, self.weight_f32)
        return F.linear(x2d.to(torch.bfloat16), self.weight_bf16).float()

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_bf16.float()
