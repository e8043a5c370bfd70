"""Precision ``auto``: bfloat16 only where the CPU does it natively and a probe confirms it is fast."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from streamrt.errors import ConfigError
from streamrt.quant.precision import (
    MIN_BF16_SPEEDUP,
    CpuFeatures,
    choose_auto,
    cpu_flags,
    detect_cpu,
    probe_bf16_speedup,
    resolve_precision,
)
from streamrt.types import PRECISION_KEYS

AVX2 = CpuFeatures.from_flags("AVX2", frozenset({"avx2", "fma", "f16c"}), onednn_bf16=False)
AVX512 = CpuFeatures.from_flags("AVX512", frozenset({"avx2", "avx512f", "avx512bw"}), onednn_bf16=True)
AVX512_BF16 = CpuFeatures.from_flags("AVX512", frozenset({"avx2", "avx512f", "avx512_bf16"}), onednn_bf16=True)
AMX = CpuFeatures.from_flags("AVX512", frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}), onednn_bf16=True)


def never_called() -> float:
    raise AssertionError("the probe must not run on a CPU without native bfloat16")


def test_cpu_labels_name_what_the_cpu_offers():
    assert [c.label for c in (AVX2, AVX512, AVX512_BF16, AMX)] == ["avx2", "avx512", "avx512_bf16", "avx512_amx"]
    # oneDNN capped below bfloat16 (ONEDNN_MAX_CPU_ISA) means no native bfloat16, whatever the flags say
    capped = CpuFeatures.from_flags("AVX2", frozenset({"avx512_bf16", "amx_bf16"}), onednn_bf16=False)
    assert not capped.bf16_native and not capped.amx and capped.label == "avx2"


@pytest.mark.parametrize("cpu", [AVX2, AVX512], ids=["avx2", "avx512-without-bf16"])
def test_auto_never_picks_bf16_where_it_would_be_emulated(cpu):
    p = choose_auto(cpu, never_called)
    assert p.scheme is None and p.name == "fp32"
    assert "no native bfloat16" in p.reason and cpu.label in p.reason


@pytest.mark.parametrize("cpu", [AVX2, AVX512], ids=["avx2", "avx512-without-bf16"])
def test_without_native_bf16_auto_picks_float16_weights_where_fbgemm_runs_them(cpu):
    with_fbgemm = replace(cpu, fbgemm=True)
    p = choose_auto(with_fbgemm, never_called)
    assert p.scheme == "fp16-weights" and "no native bfloat16" in p.reason and cpu.label in p.reason
    # fbgemm needs AVX2: elsewhere (an Arm CPU, x86 without AVX2) float32
    assert choose_auto(replace(with_fbgemm, isa="default"), never_called).scheme is None


@pytest.mark.parametrize("cpu", [AVX512_BF16, AMX], ids=["avx512_bf16", "amx"])
def test_auto_picks_bf16_on_native_cpus_when_the_probe_confirms_it(cpu):
    p = choose_auto(cpu, lambda: 4.0)
    assert p.scheme == "bf16" and p.bf16_speedup == 4.0
    assert p.describe() == {"precision": "bf16", "precision_requested": "auto", "precision_reason": p.reason,
                            "cpu_capability": cpu.label, "bf16_probe_speedup": 4.0}
    assert tuple(p.describe()) == PRECISION_KEYS  # what /healthz repeats


def test_auto_keeps_fp32_when_the_probe_finds_bf16_not_faster():
    p = choose_auto(AMX, lambda: MIN_BF16_SPEEDUP - 0.1)
    assert p.scheme is None and f"{MIN_BF16_SPEEDUP}x" in p.reason


def test_an_explicit_scheme_wins_and_says_when_it_is_emulated():
    p = resolve_precision("bf16", cpu=AVX2, probe=never_called)
    assert p.scheme == "bf16" and "emulated" in p.reason
    assert "emulated" not in resolve_precision("bf16", cpu=AMX, probe=never_called).reason
    # int8-dynamic's integer GEMM does not depend on bfloat16
    assert "emulated" not in resolve_precision("int8-dynamic", cpu=AVX2, probe=never_called).reason
    for name in ("fp32", "float32", None):
        assert resolve_precision(name, cpu=AMX, probe=never_called).scheme is None


def test_an_unknown_precision_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match="int3.*bf16.*'auto'.*'fp32'"):
        resolve_precision("int3", cpu=AVX2)


def test_attention_dtype_follows_the_scheme():
    assert resolve_precision("bf16", cpu=AMX).attention_dtype == torch.bfloat16
    assert resolve_precision("int8-dynamic", cpu=AMX).attention_dtype == torch.float32
    assert resolve_precision("fp32", cpu=AMX).attention_dtype == torch.float32


def test_cpu_flags_are_read_from_x86_and_arm_cpuinfo(tmp_path: Path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert cpu_flags(x86) == {"fpu", "avx2", "avx512_bf16"}
    assert "bf16" in cpu_flags(arm)
    assert cpu_flags(tmp_path / "missing") == frozenset()
    assert CpuFeatures.from_flags("DEFAULT", cpu_flags(arm), onednn_bf16=True).bf16_native


def test_this_machine_auto_agrees_with_its_features():
    """Holds on every CPU: bf16 is chosen only where this CPU has native bfloat16."""
    cpu = detect_cpu()
    p = resolve_precision("auto")
    assert p.cpu == cpu and p.requested == "auto"
    if not cpu.bf16_native:
        assert p.scheme == ("fp16-weights" if cpu.fp16_weights_fast else None) and p.bf16_speedup is None
    else:
        assert (p.scheme == "bf16") == (p.bf16_speedup >= MIN_BF16_SPEEDUP)


def test_the_probe_times_with_the_injected_timer():
    ticks = iter(range(1000))
    # every timed call takes one tick on both paths: the speed-up reads exactly 1
    assert probe_bf16_speedup(timer=lambda: float(next(ticks))) == 1.0
