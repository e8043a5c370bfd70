"""The shared runtime model for an ``LlmBundle`` at a precision: our forward (``CausalLM``) with
``streamrt.quant``'s scheme applied to its Linear layers, exactly as for Whisper."""

from __future__ import annotations

from typing import Any

from streamrt.decoding.causal_lm import CausalLM
from streamrt.quant import quantize
from streamrt.quant.precision import Precision, resolve_precision

# int4 schemes run the packed kernel at every row count here: their dequantizing fallback re-expands
# the whole weight on each call, slower than the packed kernel for the LLM's shapes even at 216
# rows (a 576 x 3072 projection, one thread: 20 ms packed, 28 ms dequantized; 0.12 vs 26 ms at 1 row)
PACKED_ALWAYS = ("int4-weight-only", "flexiq")


def build_lm(bundle: Any, precision: str | None = "fp32", **scheme_settings: Any) -> tuple[CausalLM, Precision]:
    """``(model, precision)``: ``precision`` is "fp32", "auto" (bf16 where this CPU does it natively)
    or a ``streamrt.quant`` scheme name ("int8-weight-only", "int8-dynamic", "int4-weight-only",
    "flexiq" with ``fraction=``, "bf16"); ``scheme_settings`` go to the scheme. The transformers model
    in ``bundle`` is left as it was (its float weights stay the reference)."""
    chosen = resolve_precision(precision)
    lm = CausalLM.from_hf(bundle.model)
    if chosen.scheme in PACKED_ALWAYS:
        scheme_settings.setdefault("dense_above_rows", None)
    if chosen.scheme is not None:
        quantize(lm, chosen.scheme, **scheme_settings)
    return lm, chosen
