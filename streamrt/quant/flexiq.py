"""FlexiQ-style adaptive mixed precision: per output channel int4 or int8, chosen at run time.

Each layer keeps both representations of every output channel, int8 per channel (the high
precision) and int4 group-wise (the low precision), with the channels sorted by the value range of
their weight row (max - min), smallest first. At low-precision fraction ``f`` the first
``round(f * out_features / 16) * 16`` channels of that order run through the int4 kernel and the rest
through the int8 kernel; one gather puts the outputs back in the model's channel order. So
``f = 0`` computes exactly what the ``int8-weight-only`` scheme computes and ``f = 1`` exactly what
``int4-weight-only`` computes (tests pin both), and changing ``f`` never re-quantizes.

``PrecisionKnob`` is the handle the scheduler holds: ``knob.set(0.5)`` re-slices every layer (a
slice of the packed int4 tensor plus re-packing at most 63 rows per layer; see ``set_fraction``),
safe to call between forward calls from any thread (each layer swaps in one tuple; a forward that
is already running finishes with the split it started with, layer by layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from streamrt.errors import ConfigError
from streamrt.quant import kernels as K
from streamrt.quant.modules import QuantizedLinear


@dataclass(frozen=True)
class _Full:
    """Kernel-ready tensors for all rows, built once by prepare()."""

    packed: torch.Tensor | None
    scales_and_zeros: torch.Tensor
    scale_c: torch.Tensor


@dataclass(frozen=True)
class _Split:
    """Kernel-ready tensors for one fraction. Rows [0, n_low) of the sorted order are int4."""

    n_low: int
    low_packed: torch.Tensor | None
    low_sz: torch.Tensor | None
    high_scale_c: torch.Tensor


def check_fraction(fraction: float) -> float:
    f = float(fraction)
    if not 0.0 <= f <= 1.0:  # also rejects NaN
        raise ConfigError(f"low-precision fraction must be in [0, 1], got {fraction!r}")
    return f


class MixedPrecisionLinear(QuantizedLinear):
    """A Linear with int8 and int4 copies of every output channel; ``fraction`` picks the mix."""

    scheme = "flexiq"

    def __init__(self, in_features: int, out_features: int, bias: bool, *, group_size: int = 64,
                 fraction: float = 0.0, int8_dense_above_rows: int | None = 16, **settings):
        settings.setdefault("dense_above_rows", 128)
        super().__init__(in_features, out_features, bias, **settings)
        self.int8_dense_above_rows = int8_dense_above_rows
        self.group_size = group_size
        self.fraction = check_fraction(fraction)
        rows = K.round_up(out_features, K.INT4_N_MULTIPLE)  # padding rows (zero) sort last
        groups = in_features // group_size
        self.register_buffer("qweight", torch.zeros(rows, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(rows))
        self.register_buffer("codes", torch.zeros(rows, in_features // 2, dtype=torch.uint8))
        self.register_buffer("group_scale", torch.ones(rows, groups))
        self.register_buffer("group_zero", torch.zeros(rows, groups))
        # output channel c of the model is row out_index[c] of the sorted order
        self.register_buffer("out_index", torch.arange(out_features))

    @classmethod
    def from_float(cls, linear: nn.Linear, **settings) -> MixedPrecisionLinear:
        n, k = linear.out_features, linear.in_features
        m = cls(k, n, linear.bias is not None, **settings)
        group_size = m.group_size
        w = linear.weight.detach().float()
        value_range = w.amax(dim=1) - w.amin(dim=1)
        order = torch.argsort(value_range, stable=True)  # smallest range first -> low precision first
        rows = m.qweight.shape[0]
        w_sorted = F.pad(w[order], (0, 0, 0, rows - n))
        m.qweight, m.scale = K.quantize_int8_per_channel(w_sorted)
        codes, m.group_scale, m.group_zero = K.quantize_int4_groupwise(w_sorted, group_size)
        m.codes = K.nibble_pack(codes)
        m.out_index = torch.argsort(order)
        if linear.bias is not None:
            m.bias = linear.bias.detach().float().clone()
        return m

    # -- the knob -----------------------------------------------------------------------------
    def low_rows(self, fraction: float) -> int:
        """How many sorted rows run in int4 at ``fraction``: whole blocks of 16 (the kernel's tile)."""
        if fraction >= 1.0:
            return self.qweight.shape[0]
        n = round(fraction * self.out_features / K.INT4_N_MULTIPLE) * K.INT4_N_MULTIPLE
        return min(n, self.out_features // K.INT4_N_MULTIPLE * K.INT4_N_MULTIPLE)

    @property
    def applied_fraction(self) -> float:
        """The fraction of real output channels actually in int4 (``fraction`` rounded to blocks)."""
        return min(self.low_rows(self.fraction), self.out_features) / self.out_features

    def set_fraction(self, fraction: float) -> None:
        """Switch the int4/int8 split. No re-quantization: slices stored tensors, re-packs <64 rows."""
        self.fraction = check_fraction(fraction)
        if self._runtime is not None:
            self._runtime = self._build_runtime(full=self._runtime[0])

    def _build_runtime(self, full: _Full | None = None) -> tuple[_Full, _Split]:
        use_kernel = K.has_int4_kernel()
        if full is None:
            packed = K.int4_kernel_pack(K.nibble_unpack(self.codes)) if use_kernel else None
            sz = K.int4_scales_and_zeros(self.group_scale, self.group_zero, self.compute_dtype)
            full = _Full(packed, sz, self.scale.to(self.compute_dtype))
        n_low = self.low_rows(self.fraction)
        low_packed = low_sz = None
        if use_kernel and n_low:
            low_packed = self._packed_prefix(full.packed, n_low)
            low_sz = full.scales_and_zeros[:, :n_low].contiguous()
        return full, _Split(n_low, low_packed, low_sz, full.scale_c[n_low:])

    def _packed_prefix(self, packed_full: torch.Tensor, n_low: int) -> torch.Tensor:
        if n_low == packed_full.shape[0]:
            return packed_full
        block = K.int4_pack_block_rows()
        aligned = 0 if block is None else n_low // block * block
        tail = K.nibble_unpack(self.codes[aligned:n_low])
        if aligned == 0:
            return K.int4_kernel_pack(tail)
        if aligned == n_low:
            return packed_full[:aligned]
        return torch.cat([packed_full[:aligned], K.int4_kernel_pack(tail)])

    # -- forward ------------------------------------------------------------------------------
    def _mm(self, x2d: torch.Tensor, runtime: tuple) -> torch.Tensor:
        split: _Split = runtime[1]
        n_low, dense = split.n_low, self._dense(x2d.shape[0])
        parts = []
        if n_low:
            if split.low_packed is None or dense:
                codes = K.nibble_unpack(self.codes[:n_low])
                w4 = K.dequantize_int4(codes, self.group_scale[:n_low], self.group_zero[:n_low])
                parts.append(F.linear(x2d, w4.to(x2d.dtype)))
            else:
                parts.append(K.int4_mm(x2d, split.low_packed, self.group_size, split.low_sz, self.compute_dtype))
        if n_low < self.qweight.shape[0]:
            parts.append(K.int8_weight_only_mm(
                x2d, self.qweight[n_low:], self.scale[n_low:], split.high_scale_c, self.compute_dtype,
                self.int8_dense_above_rows))
        y_sorted = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return y_sorted.index_select(1, self.out_index)

    def dequantized_weight(self) -> torch.Tensor:
        n_low = self.low_rows(self.fraction)
        w4 = K.dequantize_int4(K.nibble_unpack(self.codes[:n_low]), self.group_scale[:n_low], self.group_zero[:n_low])
        w8 = K.dequantize_int8(self.qweight[n_low:], self.scale[n_low:])
        return torch.cat([w4, w8]).index_select(0, self.out_index)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", int8_dense_above_rows={self.int8_dense_above_rows}"
                f", group_size={self.group_size}, fraction={self.fraction:g}")


class PrecisionKnob:
    """The low-precision fraction of a set of ``MixedPrecisionLinear`` layers, as one object.

    Build it with ``PrecisionKnob.of(model)`` after ``quantize(model, "flexiq")``; the scheduler keeps
    it and calls ``set(f)`` (0 = all int8, best accuracy; 1 = all int4, fastest weights).
    """

    def __init__(self, layers: list[tuple[str, MixedPrecisionLinear]]):
        if not layers:
            raise ConfigError("no FlexiQ layers to control: quantize the model with scheme 'flexiq' first")
        self.layers = list(layers)
        self._fraction = layers[0][1].fraction

    @classmethod
    def of(cls, model: nn.Module) -> PrecisionKnob:
        return cls([(name, m) for name, m in model.named_modules() if isinstance(m, MixedPrecisionLinear)])

    @classmethod
    def find(cls, model: nn.Module) -> PrecisionKnob | None:
        """The knob over ``model``'s FlexiQ layers, or None when it has none."""
        layers = [(name, m) for name, m in model.named_modules() if isinstance(m, MixedPrecisionLinear)]
        return cls(layers) if layers else None

    @property
    def fraction(self) -> float:
        """The fraction last set (each layer rounds it to blocks of 16 channels)."""
        return self._fraction

    def set(self, fraction: float) -> None:
        """Set every layer's low-precision fraction; raises ConfigError outside [0, 1]."""
        f = check_fraction(fraction)
        for _, layer in self.layers:
            layer.set_fraction(f)
        self._fraction = f

    def applied_fraction(self) -> float:
        """Fraction of all output channels (weighted by layer size) now in int4."""
        total = sum(m.out_features * m.in_features for _, m in self.layers)
        low = sum(m.applied_fraction * m.out_features * m.in_features for _, m in self.layers)
        return low / total

    def __repr__(self) -> str:
        return f"PrecisionKnob(fraction={self._fraction:g}, layers={len(self.layers)})"


def set_low_precision_fraction(model: nn.Module, fraction: float) -> PrecisionKnob:
    """Set the fraction on every FlexiQ layer of ``model``; returns the knob (keep it to skip the search)."""
    knob = PrecisionKnob.of(model)
    knob.set(fraction)
    return knob
