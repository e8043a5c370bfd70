"""Runtime replacements for ``nn.Linear``: one module per scheme, inference only.

Each module keeps its quantized tensors as buffers (so ``state_dict()`` / ``load_state_dict()`` work and
the saved form is portable: int4 codes are stored two per byte, not in torch's kernel layout) and
builds its kernel-ready tensors (bfloat16 scales, torch's int4 pack) in ``prepare()``, which
``streamrt.quant.quantize`` calls once; ``forward`` calls it too if nobody did (e.g. after a manual
``load_state_dict``). Inputs may have any leading shape; the last dimension is ``in_features``.
The quantized weight is not exposed as ``.weight`` on purpose: code that reads ``.weight`` to
infer a dtype would silently get int8.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from streamrt.quant import kernels as K


class QuantizedLinear(nn.Module):
    """Common shape handling, bias and runtime cache. Subclasses fill ``_mm`` and ``_build_runtime``."""

    scheme: ClassVar[str] = ""

    def __init__(self, in_features: int, out_features: int, bias: bool, *,
                 compute_dtype: torch.dtype = torch.bfloat16, dense_above_rows: int | None = 16):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.compute_dtype = compute_dtype
        self.dense_above_rows = dense_above_rows
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._runtime: Any = None

    def prepare(self) -> Any:
        """Build the kernel-ready tensors from the stored ones (call after loading a state dict)."""
        self._runtime = self._build_runtime()
        return self._runtime

    def _load_from_state_dict(self, *args, **kwargs):  # new values invalidate the kernel-ready copies
        super()._load_from_state_dict(*args, **kwargs)
        self._runtime = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        runtime = self._runtime if self._runtime is not None else self.prepare()
        lead = x.shape[:-1]
        y = self._mm(x.reshape(-1, self.in_features), runtime)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*lead, self.out_features)

    def _dense(self, rows: int) -> bool:
        return self.dense_above_rows is not None and rows > self.dense_above_rows

    def _build_runtime(self) -> Any:
        raise NotImplementedError

    def _mm(self, x2d: torch.Tensor, runtime: Any) -> torch.Tensor:
        raise NotImplementedError

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 ``[out, in]`` weight this module computes with (for tests and error reports)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, compute_dtype={self.compute_dtype}, "
                f"dense_above_rows={self.dense_above_rows}")


class Int8WeightOnlyLinear(QuantizedLinear):
    """int8 weights with one float32 scale per output channel; activations stay float.

    Rows <= ``dense_above_rows``: torch's ``_weight_int8pack_mm`` in ``compute_dtype``. More rows:
    float32 GEMM on the int8 weight converted on the fly, scale applied to the output.
    """

    scheme = "int8-weight-only"

    def __init__(self, in_features: int, out_features: int, bias: bool, **settings):
        super().__init__(in_features, out_features, bias, **settings)
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features))

    @classmethod
    def from_float(cls, linear: nn.Linear, **settings) -> Int8WeightOnlyLinear:
        m = cls(linear.in_features, linear.out_features, linear.bias is not None, **settings)
        m.qweight, m.scale = K.quantize_int8_per_channel(linear.weight)
        if linear.bias is not None:
            m.bias = linear.bias.detach().float().clone()
        return m

    def _build_runtime(self) -> torch.Tensor:
        return self.scale.to(self.compute_dtype)

    def _mm(self, x2d: torch.Tensor, scale_c: torch.Tensor) -> torch.Tensor:
        return K.int8_weight_only_mm(
            x2d, self.qweight, self.scale, scale_c, self.compute_dtype, self.dense_above_rows)

    def dequantized_weight(self) -> torch.Tensor:
        return K.dequantize_int8(self.qweight, self.scale)


class Int8DynamicLinear(QuantizedLinear):
    """int8 weights per output channel and int8 activations per token (row), int32 accumulation
    with ``torch._int_mm``. ``compute_dtype`` and ``dense_above_rows`` are unused (always integer)."""

    scheme = "int8-dynamic"

    def __init__(self, in_features: int, out_features: int, bias: bool, **settings):
        super().__init__(in_features, out_features, bias, **settings)
        self.register_buffer("qweight_t", torch.zeros(in_features, out_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features))

    @classmethod
    def from_float(cls, linear: nn.Linear, **settings) -> Int8DynamicLinear:
        m = cls(linear.in_features, linear.out_features, linear.bias is not None, **settings)
        q, m.scale = K.quantize_int8_per_channel(linear.weight)
        m.qweight_t = q.t().contiguous()
        if linear.bias is not None:
            m.bias = linear.bias.detach().float().clone()
        return m

    def _build_runtime(self) -> bool:
        return True

    def _mm(self, x2d: torch.Tensor, runtime: Any) -> torch.Tensor:
        return K.int8_dynamic_mm(x2d, self.qweight_t, self.scale)

    def dequantized_weight(self) -> torch.Tensor:
        return K.dequantize_int8(self.qweight_t.t(), self.scale)


class Float16WeightLinear(QuantizedLinear):
    """float16 weights, float32 activations and accumulation (``kernels.fbgemm_fp16_linear``): for
    CPUs without native bfloat16, where the projections are bound by the weight bytes they read.
    ``compute_dtype`` and ``dense_above_rows`` are unused. The bias is packed with the weight."""

    scheme = "fp16-weights"

    def __init__(self, in_features: int, out_features: int, bias: bool, **settings):
        super().__init__(in_features, out_features, bias, **settings)
        self.register_buffer("weight16", torch.zeros(out_features, in_features, dtype=torch.float16))

    @classmethod
    def from_float(cls, linear: nn.Linear, **settings) -> Float16WeightLinear:
        m = cls(linear.in_features, linear.out_features, linear.bias is not None, **settings)
        m.weight16 = linear.weight.detach().to(torch.float16)
        if linear.bias is not None:
            m.bias = linear.bias.detach().float().clone()
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self._runtime if self._runtime is not None else self.prepare()
        y = K.fbgemm_fp16_linear(x.reshape(-1, self.in_features), packed)
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def _build_runtime(self) -> Any:
        return K.fbgemm_fp16_prepack(self.weight16.float(), self.bias)

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight16.float()


class Int4WeightOnlyLinear(QuantizedLinear):
    """int4 weights, asymmetric per group of ``group_size`` input columns; activations stay float.

    Rows <= ``dense_above_rows``: torch's ``_weight_int4pack_mm_for_cpu`` in ``compute_dtype`` on the
    weight padded to a multiple of 16 output rows (padding rows are zero and sliced off). More rows, or
    no int4 kernel in this torch: float32 GEMM on the weight dequantized on the fly.
    """

    scheme = "int4-weight-only"

    def __init__(self, in_features: int, out_features: int, bias: bool, *, group_size: int = 64, **settings):
        settings.setdefault("dense_above_rows", 128)
        super().__init__(in_features, out_features, bias, **settings)
        self.group_size = group_size
        groups = in_features // group_size
        self.register_buffer("codes", torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
        self.register_buffer("group_scale", torch.ones(out_features, groups))
        self.register_buffer("group_zero", torch.zeros(out_features, groups))

    @classmethod
    def from_float(cls, linear: nn.Linear, *, group_size: int = 64, **settings) -> Int4WeightOnlyLinear:
        m = cls(linear.in_features, linear.out_features, linear.bias is not None, group_size=group_size, **settings)
        codes, m.group_scale, m.group_zero = K.quantize_int4_groupwise(linear.weight, group_size)
        m.codes = K.nibble_pack(codes)
        if linear.bias is not None:
            m.bias = linear.bias.detach().float().clone()
        return m

    def _build_runtime(self) -> tuple[torch.Tensor, ...]:
        if not K.has_int4_kernel():
            return ()
        n_pad = K.round_up(self.out_features, K.INT4_N_MULTIPLE) - self.out_features
        codes = F.pad(K.nibble_unpack(self.codes), (0, 0, 0, n_pad))
        scale = F.pad(self.group_scale, (0, 0, 0, n_pad), value=1.0)
        zero = F.pad(self.group_zero, (0, 0, 0, n_pad))
        return K.int4_kernel_pack(codes), K.int4_scales_and_zeros(scale, zero, self.compute_dtype)

    def _mm(self, x2d: torch.Tensor, runtime: tuple) -> torch.Tensor:
        if not runtime or self._dense(x2d.shape[0]):
            return F.linear(x2d, self.dequantized_weight().to(x2d.dtype))
        packed, sz = runtime
        y = K.int4_mm(x2d, packed, self.group_size, sz, self.compute_dtype)
        return y[:, : self.out_features] if y.shape[1] != self.out_features else y

    def dequantized_weight(self) -> torch.Tensor:
        return K.dequantize_int4(K.nibble_unpack(self.codes), self.group_scale, self.group_zero)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", group_size={self.group_size}"
