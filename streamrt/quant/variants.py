"""The list of quantized variants to compare (fp32, each scheme, FlexiQ at several fractions).

For whoever measures accuracy or speed per variant (the WER evaluation, ``streamrt bench quant``)::

    for variant in quantized_variants():
        model = variant.apply(load_fresh_float_model())
        ...  # decode the test set, record variant.label
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from streamrt.quant.flexiq import set_low_precision_fraction
from streamrt.quant.schemes import quantize

FLEXIQ_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Variant:
    """One way to run a model. ``scheme`` None means float32; ``fraction`` is FlexiQ's knob."""

    label: str
    scheme: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    fraction: float | None = None

    def apply(self, model: nn.Module) -> nn.Module:
        """Quantize ``model`` in place (pass a fresh float model each time) and return it."""
        if self.scheme is None:
            return model
        quantize(model, self.scheme, **self.settings)
        if self.fraction is not None:
            set_low_precision_fraction(model, self.fraction)
        return model


def quantized_variants(*, group_size: int = 64, flexiq_fractions: tuple[float, ...] = FLEXIQ_FRACTIONS,
                       exclude: tuple[str, ...] = ()) -> list[Variant]:
    """fp32, int8 weight-only, int8 dynamic, int4 weight-only, bf16, then FlexiQ at each fraction."""
    common = {"exclude": exclude} if exclude else {}
    variants = [
        Variant("fp32"),
        Variant("int8-weight-only", "int8-weight-only", dict(common)),
        Variant("int8-dynamic", "int8-dynamic", dict(common)),
        Variant(f"int4-weight-only-g{group_size}", "int4-weight-only", {**common, "group_size": group_size}),
        Variant("bf16", "bf16", dict(common)),
    ]
    variants += [
        Variant(f"flexiq-{round(f * 100)}%", "flexiq", {**common, "group_size": group_size}, f) for f in flexiq_fractions
    ]
    return variants
