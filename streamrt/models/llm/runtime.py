"""The shared runtime model for an ``LlmBundle`` at a precision: our forward (``CausalLM``) with
``streamrt.quant``'s scheme applied to its Linear layers, exactly as for Whisper."""

from __future__ import annotations

from typing import Any

from streamrt.decoding.causal_lm import CausalLM
from streamrt.quant import quantize
from streamrt.quant.precision import Precision, resolve_precision


def build_lm(bundle: Any, precision: str | None = "fp32", **scheme_settings: Any) -> tuple[CausalLM, Precision]:
    """``(model, precision)``: ``precision`` is "fp32", "auto" (bf16 where this CPU does it natively)
    or a ``streamrt.quant`` scheme name ("int8-weight-only", "int8-dynamic", "int4-weight-only",
    "flexiq" with ``fraction=``, "bf16"); ``scheme_settings`` go to the scheme. The transformers model
    in ``bundle`` is left as it was (its float weights stay the reference)."""
    chosen = resolve_precision(precision)
    lm = CausalLM.from_hf(bundle.model)
    if chosen.scheme is not None:
        quantize(lm, chosen.scheme, **scheme_settings)
    return lm, chosen
