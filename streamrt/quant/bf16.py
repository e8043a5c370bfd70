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
    """``y = linear(x.bfloat16(), W_bf16).float() + bias`` (``dense_above_rows`` is unused)."""

    scheme = "bf16"

    def __init__(self, in_features: int, out_features: int, bias: bool, **settings):
        super().__init__(in_features, out_features, bias, **settings)
        self.register_buffer("weight_bf16", torch.zeros(out_features, in_features, dtype=torch.bfloat16))

    @classmethod
    def from_float(cls, linear: nn.Linear, **settings) -> BFloat16Linear:
        m = cls(linear.in_features, linear.out_features, linear.bias is not None, **settings)
        m.weight_bf16 = linear.weight.detach().to(torch.bfloat16).clone()
        if linear.bias is not None:
            m.bias = linear.bias.detach().float().clone()
        return m

    def _build_runtime(self) -> bool:
        return True

    def _mm(self, x2d: torch.Tensor, runtime: bool) -> torch.Tensor:
        return F.linear(x2d.to(torch.bfloat16), self.weight_bf16).float()

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_bf16.float()
