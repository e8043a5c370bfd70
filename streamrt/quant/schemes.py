"""The scheme registry: one handler per scheme, chosen by explicit name (never guessed from a file).

A handler, as in gpt-fast, turns a float model into a quantized state dict
(``create_quantized_state_dict``) and swaps the model's ``nn.Linear`` layers for runtime modules that
can hold it (``convert_for_runtime``); ``quantize`` does both and loads the one into the other.
Nothing here changes global torch settings.
"""

from __future__ import annotations

import fnmatch
from abc import ABC
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import nn

from streamrt.errors import ConfigError
from streamrt.quant import kernels as K
from streamrt.quant.bf16 import BFloat16Linear
from streamrt.quant.flexiq import MixedPrecisionLinear, check_fraction
from streamrt.quant.modules import (
    Int4WeightOnlyLinear,
    Int8DynamicLinear,
    Float16WeightLinear,
    Int8WeightOnlyLinear,
    QuantizedLinear,
)

INT4_GROUP_SIZES = (32, 64, 128, 256)  # what torch's int4 CPU kernel accepts
COMPUTE_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class LinearSettings:
    """Settings every scheme takes.

    exclude: fnmatch patterns of module names left in float (e.g. ``("proj_out",)``).
    compute_dtype: activation dtype inside the weight-only kernels, "bfloat16" (torch 2.13's fast
        CPU path) or "float32" (torch's scalar path: exact-er, 10-100x slower).
    dense_above_rows: rows (batch x tokens) of one call above which a weight-only layer dequantizes
        its weight and runs a float32 GEMM, which beats the packed kernels on long inputs (encoder
        chunks); None = always the packed kernel. Defaults come from the crossover measured in
        docs/quantization.md: 16 rows for int8, 128 for int4 (its dequantization costs more).
        int8-dynamic ignores it (its integer GEMM is fast at every size).
    """

    exclude: tuple[str, ...] = ()
    compute_dtype: str = "bfloat16"
    dense_above_rows: int | None = 16

    def validate(self) -> None:
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"compute_dtype must be one of {sorted(COMPUTE_DTYPES)}, got {self.compute_dtype!r}")
        if self.dense_above_rows is not None and (not isinstance(self.dense_above_rows, int) or self.dense_above_rows < 0):
            raise ConfigError(f"dense_above_rows must be an int >= 0 rows or None, got {self.dense_above_rows!r}")
        if isinstance(self.exclude, str) or not all(isinstance(p, str) for p in self.exclude):
            raise ConfigError(f"exclude must be a tuple of module-name patterns, got {self.exclude!r}")

    def module_kwargs(self) -> dict[str, Any]:
        return {"compute_dtype": COMPUTE_DTYPES[self.compute_dtype], "dense_above_rows": self.dense_above_rows}


@dataclass(frozen=True)
class Int4Settings(LinearSettings):
    """group_size: input columns sharing one int4 scale and zero (32, 64, 128 or 256)."""

    group_size: int = 64
    dense_above_rows: int | None = 128

    def validate(self) -> None:
        super().validate()
        if self.group_size not in INT4_GROUP_SIZES:
            raise ConfigError(f"group_size must be one of {INT4_GROUP_SIZES}, got {self.group_size!r}")

    def module_kwargs(self) -> dict[str, Any]:
        return {**super().module_kwargs(), "group_size": self.group_size}


@dataclass(frozen=True)
class FlexiQSettings(Int4Settings):
    """fraction: initial share of output channels in int4 (0..1); change it later with the knob.
    dense_above_rows applies to the int4 channels, int8_dense_above_rows to the int8 ones (defaults
    equal to the int4-weight-only and int8-weight-only schemes', so fractions 1 and 0 match them)."""

    fraction: float = 0.0
    int8_dense_above_rows: int | None = 16

    def validate(self) -> None:
        super().validate()
        check_fraction(self.fraction)
        rows = self.int8_dense_above_rows
        if rows is not None and (not isinstance(rows, int) or rows < 0):
            raise ConfigError(f"int8_dense_above_rows must be an int >= 0 rows or None, got {rows!r}")

    def module_kwargs(self) -> dict[str, Any]:
        return {**super().module_kwargs(), "fraction": self.fraction,
                "int8_dense_above_rows": self.int8_dense_above_rows}


@dataclass(frozen=True)
class QuantReport:
    """What ``quantize`` did: which Linear layers it replaced and which it left in float, and why."""

    scheme: str
    settings: dict[str, Any]
    quantized: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = field(default=())

    def __str__(self) -> str:
        lines = [f"{self.scheme}: {len(self.quantized)} Linear layers quantized, {len(self.skipped)} left in float"]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped]
        return "\n".join(lines)


class SchemeHandler(ABC):
    """One quantization scheme for ``nn.Linear`` layers."""

    name: ClassVar[str]
    summary: ClassVar[str]
    module_type: ClassVar[type[QuantizedLinear]]
    settings_type: ClassVar[type[LinearSettings]] = LinearSettings
    error_bound: ClassVar[float]  # relative output error vs float on Gaussian layers (tests pin it)
    attention_dtype: ClassVar[torch.dtype] = torch.float32  # attention caches between the projections

    def computes_in_bfloat16(self) -> bool:
        """The kernels take bfloat16 activations (fast only on CPUs with native bfloat16)."""
        return self.settings.compute_dtype == "bfloat16"

    def __init__(self, settings: LinearSettings):
        settings.validate()
        self.settings = settings

    def skip_reason(self, name: str, linear: nn.Linear) -> str | None:
        """Why this layer stays float, or None to quantize it. Subclasses add kernel shape limits."""
        for pattern in self.settings.exclude:
            if fnmatch.fnmatchcase(name, pattern):
                return f"excluded by pattern {pattern!r}"
        if linear.weight.device.type != "cpu":
            return f"on {linear.weight.device.type}; these kernels are CPU only"
        return None

    def plan(self, model: nn.Module) -> QuantReport:
        """Decide per Linear layer, changing nothing."""
        quantized, skipped = [], []
        for name, module in model.named_modules():
            if type(module) is nn.Linear:
                reason = self.skip_reason(name, module)
                (skipped.append((name, reason)) if reason else quantized.append(name))
        return QuantReport(self.name, asdict(self.settings), tuple(quantized), tuple(skipped))

    def create_quantized_state_dict(self, model: nn.Module) -> tuple[dict[str, torch.Tensor], QuantReport]:
        """The float model's state dict with each planned Linear's entries replaced by quantized ones."""
        report = self.plan(model)
        state = model.state_dict()
        for name in report.quantized:
            linear = model.get_submodule(name)
            for key in ("weight", "bias"):
                state.pop(f"{name}.{key}", None)
            qmodule = self.module_type.from_float(linear, **self.settings.module_kwargs())
            state.update({f"{name}.{k}": v for k, v in qmodule.state_dict().items()})
        return state, report

    def convert_for_runtime(self, model: nn.Module, report: QuantReport) -> nn.Module:
        """Replace the planned Linear layers by empty runtime modules (load a quantized state dict next)."""
        for name in report.quantized:
            linear = model.get_submodule(name)
            empty = self.module_type(linear.in_features, linear.out_features, linear.bias is not None,
                                     **self.settings.module_kwargs())
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, empty)
        return model


class Int8WeightOnly(SchemeHandler):
    name = "int8-weight-only"
    summary = "int8 weights, one scale per output channel; float activations (_weight_int8pack_mm)"
    module_type = Int8WeightOnlyLinear
    error_bound = 0.015  # measured <= 0.009: bfloat16 activations dominate int8 weight rounding

    def skip_reason(self, name: str, linear: nn.Linear) -> str | None:
        reason = super().skip_reason(name, linear)
        if reason is None and linear.in_features % 16 and self.settings.compute_dtype == "bfloat16":
            # torch 2.13's bfloat16 _weight_int8pack_mm crashes the process (segfault) on such K
            reason = f"in_features {linear.in_features} is not a multiple of 16 (_weight_int8pack_mm needs it)"
        return reason


class Int8Dynamic(SchemeHandler):
    name = "int8-dynamic"
    summary = "int8 weights per output channel, int8 activations per token, int32 accumulation (torch._int_mm)"
    module_type = Int8DynamicLinear
    error_bound = 0.02  # measured <= 0.0125

    def computes_in_bfloat16(self) -> bool:
        return False  # integer GEMM; compute_dtype is unused


class Float16Weights(SchemeHandler):
    name = "fp16-weights"
    summary = ("float16 weights, float32 activations and accumulation (fbgemm's FP16 GEMM): half the "
               "weight bytes, float32-level results, on CPUs without native bfloat16")
    module_type = Float16WeightLinear
    error_bound = 0.002  # measured ~2e-4 (float16's 11-bit mantissa on the weights only)

    def computes_in_bfloat16(self) -> bool:
        return False

    def skip_reason(self, name: str, linear: nn.Linear) -> str | None:
        reason = super().skip_reason(name, linear)
        if reason is None and not K.has_fbgemm():
            reason = "this torch has no fbgemm (its x86 quantized engine)"
        return reason


class Int4WeightOnly(SchemeHandler):
    name = "int4-weight-only"
    summary = "int4 weights, scale and zero per group of input columns; float activations (_weight_int4pack_mm_for_cpu)"
    module_type = Int4WeightOnlyLinear
    settings_type = Int4Settings
    error_bound = 0.15  # measured <= 0.098 at group_size 64

    def skip_reason(self, name: str, linear: nn.Linear) -> str | None:
        reason = super().skip_reason(name, linear)
        g = self.settings.group_size
        if reason is None and linear.in_features % g:
            reason = f"in_features {linear.in_features} is not a multiple of group_size {g}"
        return reason


class FlexiQ(Int4WeightOnly):
    name = "flexiq"
    summary = ("per output channel int4 or int8 by weight range; the int4 share is a runtime knob "
               "(PrecisionKnob / set_low_precision_fraction)")
    module_type = MixedPrecisionLinear
    settings_type = FlexiQSettings
    error_bound = 0.15  # at fraction 1; int8-weight-only's bound at fraction 0
    # shape limits: int4's (K % group_size == 0 also gives the K % 16 the int8 kernel needs)


@dataclass(frozen=True)
class BFloat16Settings(LinearSettings):
    """float32_up_to_rows: calls of at most this many rows run in float32 (faster there)."""

    float32_up_to_rows: int = 4

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.float32_up_to_rows, int) or self.float32_up_to_rows < 0:
            raise ConfigError(f"float32_up_to_rows must be an int >= 0 rows, got {self.float32_up_to_rows!r}")

    def module_kwargs(self) -> dict[str, Any]:
        return {**super().module_kwargs(), "float32_up_to_rows": self.float32_up_to_rows}


class BFloat16(SchemeHandler):
    name = "bf16"
    settings_type = BFloat16Settings
    summary = "bfloat16 weights and GEMM (oneDNN, AMX where the CPU has it); float32 inputs and outputs"
    module_type = BFloat16Linear
    error_bound = 0.01  # measured ~0.003 (8-bit mantissa on weights and activations)
    attention_dtype = torch.bfloat16

    def computes_in_bfloat16(self) -> bool:
        return True


_REGISTRY: dict[str, type[SchemeHandler]] = {
    h.name: h for h in (Int8WeightOnly, Int8Dynamic, Float16Weights, Int4WeightOnly, FlexiQ, BFloat16)
}


def schemes() -> dict[str, str]:
    """Known scheme names with a one-line summary each."""
    return {name: h.summary for name, h in _REGISTRY.items()}


def get_handler(scheme: str, **settings: Any) -> SchemeHandler:
    """The handler for ``scheme`` with validated settings; ConfigError names what is wrong."""
    if scheme not in _REGISTRY:
        raise ConfigError(f"unknown quantization scheme {scheme!r}; known schemes: {', '.join(_REGISTRY)}")
    handler_type = _REGISTRY[scheme]
    allowed = {f.name for f in fields(handler_type.settings_type)}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ConfigError(f"scheme {scheme!r} has no setting(s) {', '.join(unknown)}; it takes: {', '.join(sorted(allowed))}")
    if isinstance(settings.get("exclude"), list):
        settings["exclude"] = tuple(settings["exclude"])
    return handler_type(handler_type.settings_type(**settings))


def quantize(model: nn.Module, scheme: str, **settings: Any) -> nn.Module:
    """Quantize ``model``'s ``nn.Linear`` layers in place with ``scheme``; returns the same model.

    The caller must pass a float32 CPU model in eval mode and keep using the returned object. What was
    quantized and what was skipped (with the reason) is in ``model.quant_report`` (a ``QuantReport``);
    ``plan(model, scheme, ...)`` gives the same report without changing anything. Raises ConfigError for
    an unknown scheme or setting.
    """
    handler = get_handler(scheme, **settings)
    state, report = handler.create_quantized_state_dict(model)
    handler.convert_for_runtime(model, report)
    model.load_state_dict(state, strict=True, assign=True)
    for name in report.quantized:
        model.get_submodule(name).prepare()
    model.quant_report = report
    return model


def plan(model: nn.Module, scheme: str, **settings: Any) -> QuantReport:
    """What ``quantize`` would do to ``model``, without doing it."""
    return get_handler(scheme, **settings).plan(model)


def kernel_support() -> dict[str, bool]:
    """Which torch CPU kernels this build has (each missing one falls back to pure torch)."""
    return {
        "_weight_int8pack_mm": K.has_op("_weight_int8pack_mm"),
        "_int_mm": K.int_mm_is_exact(),
        "_weight_int4pack_mm_for_cpu": K.has_int4_kernel(),
    }
