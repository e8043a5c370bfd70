"""The shared runtime model for an ``LlmBundle`` at a precision: our forward (``CausalLM``) with
``streamrt.quant``'s scheme applied to its Linear layers, exactly as for Whisper; optionally a
second scheme for calls with many rows (prefill chunks, a big batch of decode rows)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamrt.decoding.causal_lm import CausalLM
from streamrt.errors import ConfigError
from streamrt.quant import quantize
from streamrt.quant.by_rows import split_by_rows
from streamrt.quant.precision import AUTO, CpuFeatures, Precision, detect_cpu, resolve_precision

# int4 schemes run the packed kernel at every row count here: their dequantizing fallback re-expands
# the whole weight on each call, slower than the packed kernel for the LLM's shapes even at 216
# rows (a 576 x 3072 projection, one thread: 20 ms packed, 28 ms dequantized; 0.12 vs 26 ms at 1 row)
PACKED_ALWAYS = ("int4-weight-only", "flexiq")


@dataclass(frozen=True)
class LmPrecision:
    """What ``build_lm`` made: ``precision`` for calls below ``many_from_rows`` rows (decode) and
    ``many`` (None: the same) for calls of at least that many rows (prefill)."""

    precision: Precision
    many: Precision | None = None
    many_from_rows: int | None = None

    def describe(self) -> dict:
        out = self.precision.describe()
        if self.many is not None:
            out.update(prefill_precision=self.many.name, prefill_from_rows=self.many_from_rows)
        return out


def choose_llm_auto(cpu: CpuFeatures) -> tuple[Precision, Precision | None]:
    """``auto`` for the LLM: (decode precision, prefill precision or None).

    Decode (a few rows per step) is bound by the weight bytes read: float16 weights through fbgemm
    where it runs (AVX2 and up; float32-level results at half the bytes, as fast as int4's packed
    kernel here and far more accurate), else float32. Prefill (hundreds of rows) is bound by
    arithmetic: int8 dynamic on AVX-512 CPUs (VNNI int8 dot products; 3x int4 and 2x float16 at 200
    rows on the EPYC of docs/benchmarks.md), else the decode precision: on AVX2 ``_int_mm`` is 7x
    slower than float16 weights. bfloat16 is not chosen: at one row it reads twice the bytes of
    float16 weights, and at 200 rows int8 beats it even where it is native."""
    if cpu.fp16_weights_fast:
        decode = Precision("fp16-weights", AUTO, f"fp16-weights: decode reads half float32's bytes ({cpu.label})", cpu)
    else:
        decode = Precision(None, AUTO, f"fp32: no fbgemm float16 GEMM on this CPU ({cpu.label})", cpu)
    if cpu.isa == "avx512":
        return decode, Precision("int8-dynamic", AUTO, f"int8-dynamic prefill: AVX-512 int8 GEMM ({cpu.label})", cpu)
    return decode, None


def build_lm(bundle: Any, precision: str | None = "fp32", *, prefill_precision: str | None = None,
             prefill_from_rows: int = 4, **scheme_settings: Any) -> tuple[CausalLM, Precision]:
    """``(model, precision)``: ``precision`` is "fp32", "auto" (by this CPU: ``choose_llm_auto``)
    or a ``streamrt.quant`` scheme name ("int8-weight-only", "int8-dynamic", "int4-weight-only",
    "flexiq" with ``fraction=``, "bf16", "fp16-weights"); ``scheme_settings`` go to the scheme. The
    transformers model in ``bundle`` is left as it was (its float weights stay the reference).

    ``prefill_precision``: a second scheme (e.g. "int8-dynamic") for every call of at least
    ``prefill_from_rows`` rows: a prefill chunk, or that many decode rows batched (with "auto" it is
    chosen too unless given). The weights are held in both forms (``streamrt.quant.by_rows``);
    ``model.lm_precision`` (an ``LmPrecision``) says what was built."""
    if precision == AUTO:
        chosen, auto_many = choose_llm_auto(detect_cpu())
        if prefill_precision is None and auto_many is not None:
            prefill_precision = auto_many.scheme
    else:
        chosen = resolve_precision(precision)
    lm = _quantized(bundle, chosen, scheme_settings)
    many = None
    if prefill_precision is not None:
        many = resolve_precision(prefill_precision)
        if many.scheme == chosen.scheme:
            raise ConfigError(f"prefill_precision {prefill_precision!r} is the decode precision already")
        wide = _quantized(bundle, many, {})
        split_by_rows(lm, wide, prefill_from_rows)
    lm.lm_precision = LmPrecision(chosen, many, prefill_from_rows if many is not None else None)
    return lm, chosen


def _quantized(bundle: Any, chosen: Precision, settings: dict[str, Any]) -> CausalLM:
    lm = CausalLM.from_hf(bundle.model)
    settings = dict(settings)
    if chosen.scheme in PACKED_ALWAYS:
        settings.setdefault("dense_above_rows", None)
    if chosen.scheme is not None:
        quantize(lm, chosen.scheme, **settings)
    return lm
