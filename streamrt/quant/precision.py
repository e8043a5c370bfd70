"""Which precision a model runs in: ``auto`` picks by what this CPU does fast, never by guesswork.

    precision = resolve_precision("auto")      # or "fp32", or a scheme name such as "bf16"
    precision.scheme                           # "bf16", or None for float32
    precision.reason                           # why, in words
    precision.describe()                       # for ready.settings, /healthz, scores.json, bench JSON

bfloat16 is only fast where the CPU has bfloat16 dot-product instructions (AVX512-BF16, AMX-BF16, Arm
BF16). Elsewhere oneDNN or torch emulates it, and on an AVX2-only CPU a bfloat16 GEMM runs at ~0.8
GFLOP/s against ~127 for float32 (docs/quantization.md). So ``auto`` takes bfloat16 only when

1. the CPU says it has native bfloat16 (its flags, and oneDNN agrees it may use them), and
2. a short probe (one encoder-sized GEMM, a few milliseconds) runs at least ``MIN_BF16_SPEEDUP``
   times faster in bfloat16 than in float32 on this machine;

else, on an x86 CPU with AVX2 and torch's fbgemm, ``fp16-weights`` (float16 weights, float32
activations and accumulation: float32-level results, half the weight bytes to read: tiny.en's
balanced step 0.83x float32's, the same words; docs/benchmarks.md), else float32. An explicit scheme
always wins (``--quantize bf16`` on an AVX2 CPU is obeyed, and its reason says it is emulated there).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from streamrt.errors import ConfigError
from streamrt.quant import kernels as K
from streamrt.quant.schemes import get_handler

AUTO = "auto"
FLOAT32_NAMES = ("fp32", "float32")
MIN_BF16_SPEEDUP = 1.2  # bf16 over fp32 in the probe; native bf16 CPUs measure 1.7-12x, emulated ones < 1
PROBE_SHAPE = (64, 384, 1536)  # rows x in x out: a tiny.en encoder FFN over 1.3 s of frames
PROBE_REPEATS = 9

# CPU flags that mean native bfloat16 dot products (x86 /proc/cpuinfo "flags", Arm "Features")
_X86_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
_ARM_BF16_FLAGS = frozenset({"bf16"})


@dataclass(frozen=True)
class CpuFeatures:
    """What this CPU offers the kernels.

    isa: torch's kernel dispatch level, lower case ("avx2", "avx512", "default", ...).
    bf16_native: bfloat16 dot-product instructions that oneDNN may use (AVX512-BF16, AMX-BF16, Arm BF16).
    amx: AMX tiles (Sapphire Rapids and later).
    onednn_bf16: oneDNN accepts bfloat16 GEMMs here (natively, or emulated on plain AVX-512).
    fbgemm: torch has fbgemm, its x86 quantized engine (float16-weight GEMMs).
    """

    isa: str
    bf16_native: bool
    amx: bool
    onednn_bf16: bool
    fbgemm: bool = False

    @property
    def fp16_weights_fast(self) -> bool:
        """fbgemm's float16-weight GEMM runs here: torch has fbgemm and the CPU AVX2 or more."""
        return self.fbgemm and self.isa in ("avx2", "avx512")

    @property
    def label(self) -> str:
        """One word for reports: "avx512_amx", "avx512_bf16", "avx512", "avx2", ..."""
        if self.amx and self.bf16_native:
            return f"{self.isa}_amx"
        if self.bf16_native:
            return f"{self.isa}_bf16"
        return self.isa

    @classmethod
    def from_flags(cls, isa: str, flags: frozenset[str], onednn_bf16: bool, fbgemm: bool = False) -> "CpuFeatures":
        """Features from torch's dispatch level, the CPU's flags, oneDNN's bfloat16 support and
        whether torch has fbgemm."""
        has_bf16 = bool(flags & (_X86_BF16_FLAGS | _ARM_BF16_FLAGS))
        return cls(isa=isa.lower(), bf16_native=has_bf16 and onednn_bf16,
                   amx="amx_bf16" in flags and onednn_bf16, onednn_bf16=onednn_bf16, fbgemm=fbgemm)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first CPU's flags (x86 "flags", Arm "Features"); empty where there is no /proc/cpuinfo."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def onednn_bf16_supported() -> bool:
    """oneDNN accepts bfloat16 here (it also says so on plain AVX-512, where it emulates it)."""
    if not torch.backends.mkldnn.is_available():
        return False
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


@functools.cache
def detect_cpu() -> CpuFeatures:
    """This machine's features (read once per process, at first use; never at import)."""
    return CpuFeatures.from_flags(torch.backends.cpu.get_cpu_capability(), cpu_flags(), onednn_bf16_supported(),
                                  K.has_fbgemm())


def probe_bf16_speedup(timer: Callable[[], float] = time.perf_counter) -> float:
    """float32 time over bfloat16 time for one ``PROBE_SHAPE`` GEMM, best of ``PROBE_REPEATS`` each,
    through the kernels the bf16 scheme runs (oneDNN prepacked where it exists). A few ms."""
    rows, k, n = PROBE_SHAPE
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(rows, k, generator=gen), torch.randn(n, k, generator=gen)
    xb, wb = x.bfloat16(), w.bfloat16()
    packed = K.bf16_prepack(wb)

    def bf16() -> torch.Tensor:
        return torch.nn.functional.linear(xb, wb) if packed is None else K.bf16_packed_mm(xb, packed)

    def fp32() -> torch.Tensor:
        return torch.nn.functional.linear(x, w)

    def timed(fn: Callable[[], torch.Tensor]) -> float:
        t0 = timer()
        fn()
        return timer() - t0

    with torch.inference_mode():
        fp32(), bf16()  # the first calls set up the kernels
        # interleaved, so a burst of load on a shared machine slows both sides alike
        pairs = [(timed(fp32), timed(bf16)) for _ in range(PROBE_REPEATS)]
    return max(min(f for f, _ in pairs), 1e-9) / max(min(b for _, b in pairs), 1e-9)


@dataclass(frozen=True)
class Precision:
    """The precision a model runs in, and why.

    scheme: a ``streamrt.quant`` scheme name, or None for float32.
    requested: what was asked for ("auto", "fp32", or a scheme name).
    reason: why this one, in words (for logs, ready.settings, /healthz, scores.json).
    cpu: the CPU it was chosen on.
    bf16_speedup: the probe's bfloat16-over-float32 speed-up, when ``auto`` ran it.
    """

    scheme: str | None
    requested: str
    reason: str
    cpu: CpuFeatures
    bf16_speedup: float | None = None

    @property
    def name(self) -> str:
        return self.scheme or "fp32"

    @property
    def attention_dtype(self) -> torch.dtype:
        """dtype for attention caches between the scheme's projections (bfloat16 for bf16)."""
        return torch.float32 if self.scheme is None else get_handler(self.scheme).attention_dtype

    def describe(self) -> dict:
        """The keys of ``streamrt.types.PRECISION_KEYS`` (``bf16_probe_speedup`` only when the probe ran)."""
        out = {"precision": self.name, "precision_requested": self.requested, "precision_reason": self.reason,
               "cpu_capability": self.cpu.label}
        if self.bf16_speedup is not None:
            out["bf16_probe_speedup"] = round(self.bf16_speedup, 2)
        return out


def choose_auto(cpu: CpuFeatures, probe: Callable[[], float]) -> Precision:
    """``auto``'s rule: bfloat16 on native-bf16 CPUs where the probe confirms it is fast; else
    float16 weights where fbgemm runs them (``CpuFeatures.fp16_weights_fast``), else float32.
    ``probe`` (bfloat16 speed-up over float32) runs only on native-bf16 CPUs."""
    if not cpu.bf16_native:
        why = f"this CPU ({cpu.label}) has no native bfloat16, which would be emulated and slower than float32"
        if cpu.fp16_weights_fast:
            return Precision("fp16-weights", AUTO, f"fp16-weights: {why}; float16 weights through fbgemm "
                             "read half the bytes at float32-level results", cpu)
        return Precision(None, AUTO, f"fp32: {why}", cpu)
    speedup = probe()
    if speedup < MIN_BF16_SPEEDUP:
        return Precision(None, AUTO, f"fp32: bfloat16 GEMM ran only {speedup:.2f}x float32 in the probe "
                         f"(bf16 needs >= {MIN_BF16_SPEEDUP}x)", cpu, speedup)
    return Precision("bf16", AUTO, f"bf16: native bfloat16 ({cpu.label}); GEMM {speedup:.1f}x float32 "
                     "in the probe", cpu, speedup)


def resolve_precision(requested: str | None = AUTO, *, cpu: CpuFeatures | None = None,
                      probe: Callable[[], float] = probe_bf16_speedup) -> Precision:
    """``requested``: "auto", "fp32"/"float32"/None (float32), or a scheme name (``streamrt.quant.schemes``).
    Raises ConfigError for an unknown name, listing the known ones."""
    cpu = cpu or detect_cpu()
    if requested is None or requested in FLOAT32_NAMES:
        return Precision(None, requested or "fp32", "fp32: asked for", cpu)
    if requested == AUTO:
        return _auto_cached(cpu) if probe is probe_bf16_speedup else choose_auto(cpu, probe)
    try:
        handler = get_handler(requested)
    except ConfigError as e:
        raise ConfigError(f"{e.message}; or 'auto' (by this CPU) or 'fp32'") from None
    reason = f"{requested}: asked for"
    if handler.computes_in_bfloat16() and not cpu.bf16_native:
        reason += f"; this CPU ({cpu.label}) has no native bfloat16, so its bfloat16 arithmetic is emulated and slow here"
    return Precision(requested, requested, reason, cpu)


@functools.cache
def _auto_cached(cpu: CpuFeatures) -> Precision:
    """``auto`` on this machine probes once per process (every model load after the first reuses it)."""
    return choose_auto(cpu, probe_bf16_speedup)
