"""Quantized Linear layers for CPU inference: one handler per scheme, chosen by name.

    from streamrt.quant import quantize, schemes, PrecisionKnob
    quantize(model, "int8-dynamic")                 # or "int8-weight-only", "int4-weight-only"
    print(model.quant_report)                       # what was quantized, what was skipped and why
    quantize(model, "flexiq", group_size=64)        # int4/int8 per channel, runtime knob
    knob = PrecisionKnob.of(model); knob.set(0.5)   # half the channels (smallest ranges) in int4

See docs/quantization.md for the kernels used, error bounds and measured speed.
"""

from streamrt.quant.flexiq import MixedPrecisionLinear, PrecisionKnob, set_low_precision_fraction
from streamrt.quant.modules import (
    Float16WeightLinear, Int4WeightOnlyLinear, Int8DynamicLinear, Int8WeightOnlyLinear, QuantizedLinear,
)
from streamrt.quant.schemes import QuantReport, SchemeHandler, get_handler, kernel_support, plan, quantize, schemes
from streamrt.quant.variants import Variant, quantized_variants

__all__ = [
    "Float16WeightLinear",
    "Int4WeightOnlyLinear",
    "Int8DynamicLinear",
    "Int8WeightOnlyLinear",
    "MixedPrecisionLinear",
    "PrecisionKnob",
    "QuantReport",
    "QuantizedLinear",
    "SchemeHandler",
    "Variant",
    "get_handler",
    "kernel_support",
    "plan",
    "quantize",
    "quantized_variants",
    "schemes",
    "set_low_precision_fraction",
]
