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

from streamrt.quant import kernels as K
from streamrt.quant.modules import QuantizedLinear


class BFloat16Linear(QuantizedLinear):
    """``y = linear(x.bfloat16(), W_bf16).float() + bias``, on the weight prepacked once in oneDNN's
    layout (``kernels.bf16_prepack``; plain ``F.linear`` where that is missing). Calls of at most
    ``float32_up_to_rows`` rows on a weight of at most ``float32_up_to_weights`` elements (one
    decoder token of a few streams) run in float32 on the float weight, kept as well: there the
    weight stays in cache and float32 is cheaper (measured, 384x384 at 1 row: 0.012 ms against
    0.045 ms prepacked); the vocabulary projection is prepacked at any row count (1 row: 1.3 ms
    against 4.4 ms in float32). ``dense_above_rows`` is unused."""

    scheme = "bf16"

    def __init__(self, in_features: int, out_features: int, bias: bool, *, float32_up_to_rows: int = 4,
                 float32_up_to_weights: int = 1 << 21, **settings):
        super().__init__(in_features, out_features, bias, **settings)
        small = in_features * out_features <= float32_up_to_weights
        self.float32_up_to_rows = float32_up_to_rows if small else 0
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

    def _build_runtime(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        bias = None if self.bias is None else self.bias.to(torch.bfloat16)
        return K.bf16_prepack(self.weight_bf16), bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """float32 in, float32 out (see the class); bfloat16 in, bfloat16 out, the bias added inside
        the GEMM in bfloat16: a model that keeps its activations in bfloat16 pays no casts."""
        if x.dtype != torch.bfloat16:
            return super().forward(x)
        packed, bias = self._runtime if self._runtime is not None else self.prepare()
        x2d = x.reshape(-1, self.in_features)
        if packed is None:
            y = F.linear(x2d, self.weight_bf16, bias)
        else:
            y = K.bf16_packed_mm(x2d, packed, bias)
        return y.reshape(*x.shape[:-1], self.out_features)

    def _mm(self, x2d: torch.Tensor, runtime: tuple[torch.Tensor | None, torch.Tensor | None]) -> torch.Tensor:
        if x2d.shape[0] <= self.float32_up_to_rows:
            return F.linear(x2d, self.weight_f32)
        packed = runtime[0]
        if packed is None:
            return F.linear(x2d.to(torch.bfloat16), self.weight_bf16).float()
        return K.bf16_packed_mm(x2d.to(torch.bfloat16), packed).float()

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_bf16.float()


def runs_in_bf16(module: nn.Module) -> bool:
    """Every linear projection inside ``module`` is a ``BFloat16Linear`` (bfloat16 in, bfloat16 out),
    so a caller may keep the activations between them in bfloat16."""
    linears = [m for m in module.modules() if isinstance(m, (nn.Linear, QuantizedLinear))]
    return bool(linears) and all(isinstance(m, BFloat16Linear) for m in linears)
