"""The scheme registry and each scheme's accuracy on random Linear layers.

Error bounds (``SchemeHandler.error_bound``, also in docs/quantization.md) are relative Frobenius
errors ||y_q - y|| / ||y|| of a layer's output against float32, for Gaussian weights and inputs.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from streamrt.errors import ConfigError
from streamrt.quant.bf16 import BFloat16Linear
from streamrt.quant.precision import detect_cpu
from streamrt.quant import (
    Float16WeightLinear,
    Int4WeightOnlyLinear,
    Int8DynamicLinear,
    Int8WeightOnlyLinear,
    MixedPrecisionLinear,
    get_handler,
    plan,
    quantize,
    schemes,
)

SCHEMES = {
    "int8-weight-only": Int8WeightOnlyLinear,
    "int8-dynamic": Int8DynamicLinear,
    "int4-weight-only": Int4WeightOnlyLinear,
    "flexiq": MixedPrecisionLinear,
    "bf16": BFloat16Linear,
    "fp16-weights": Float16WeightLinear,
}


def gaussian_linear(k: int, n: int, seed: int = 0, bias: bool = True) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(k, n, bias=bias)
    layer.weight.data.normal_(0, k**-0.5)
    if bias:
        layer.bias.data.normal_(0, 0.1)
    return layer.eval()


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y - ref).norm() / ref.norm()).item()


def test_registry_lists_every_scheme():
    assert set(schemes()) == set(SCHEMES)


@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize("shape", [(384, 384), (384, 1536), (1536, 384), (256, 200)])
@pytest.mark.parametrize("rows", [1, 7, 64, 200])  # above dense_above_rows (16 / 128): dequantize + GEMM
def test_scheme_error_within_documented_bound(scheme, shape, rows):
    k, n = shape
    layer = gaussian_linear(k, n)
    model = nn.Sequential(copy.deepcopy(layer))
    settings = {"fraction": 1.0} if scheme == "flexiq" else {}  # the knob's worst case
    if scheme == "bf16":
        settings = {"float32_up_to_rows": 0}  # bfloat16 at every row count (default: float32 up to 4)
    quantize(model, scheme, **settings)
    assert isinstance(model[0], SCHEMES[scheme]) and model.quant_report.quantized == ("0",)
    x = torch.randn(rows, k)
    with torch.inference_mode():
        err = rel_err(model(x), layer(x))
    bound = get_handler(scheme).error_bound
    assert err < bound, f"{scheme} {shape} rows={rows}: relative error {err:.4f} over bound {bound}"
    assert err > 1e-5, "output identical to float: the layer was not quantized"


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_keeps_leading_dims_and_dtype(scheme):
    layer = gaussian_linear(128, 48)
    model = quantize(nn.Sequential(copy.deepcopy(layer)), scheme)
    x = torch.randn(2, 3, 5, 128)
    y = model(x)
    assert y.shape == (2, 3, 5, 48) and y.dtype == torch.float32
    assert torch.equal(y.reshape(30, 48), model(x.reshape(30, 128)))


def test_int4_smaller_groups_are_more_accurate():
    layer = gaussian_linear(512, 256)
    x = torch.randn(4, 512)
    errors = []
    for group_size in (32, 64, 128):
        model = quantize(nn.Sequential(copy.deepcopy(layer)), "int4-weight-only", group_size=group_size)
        errors.append(rel_err(model(x), layer(x)))
    assert errors == sorted(errors) and errors[-1] < get_handler("int4-weight-only").error_bound


def test_int4_pads_output_rows_to_kernel_multiple():
    layer = gaussian_linear(64, 51)  # 51 output rows: the kernel needs multiples of 16
    model = quantize(nn.Sequential(copy.deepcopy(layer)), "int4-weight-only", group_size=32)
    x = torch.randn(3, 64)
    assert model(x).shape == (3, 51)
    dense = nn.functional.linear(x, model[0].dequantized_weight(), layer.bias)
    assert torch.allclose(model(x), dense, rtol=0.02, atol=0.02)  # bfloat16 activations in the kernel


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_quantized_state_dict_loads_into_converted_model(scheme):
    layer = gaussian_linear(128, 64)
    handler = get_handler(scheme)
    state, report = handler.create_quantized_state_dict(nn.Sequential(copy.deepcopy(layer)))
    fresh = handler.convert_for_runtime(nn.Sequential(nn.Linear(128, 64)), report)
    fresh.load_state_dict(state)
    direct = quantize(nn.Sequential(copy.deepcopy(layer)), scheme)
    x = torch.randn(3, 128)
    assert torch.equal(fresh(x), direct(x))


def test_skips_shapes_the_kernel_cannot_take_and_says_why():
    model = nn.Sequential(nn.Linear(100, 32), nn.Linear(32, 96), nn.Linear(96, 64), nn.Conv1d(4, 4, 1))
    r8 = plan(model, "int8-weight-only")
    assert r8.quantized == ("1", "2") and r8.skipped[0][0] == "0" and "multiple of 16" in r8.skipped[0][1]
    r4 = plan(model, "int4-weight-only", group_size=64)
    assert r4.quantized == ()
    assert dict(r4.skipped)["2"] == "in_features 96 is not a multiple of group_size 64"
    assert plan(model, "int8-dynamic").quantized == ("0", "1", "2")  # torch._int_mm takes any K
    quantize(model, "int4-weight-only", group_size=32)
    assert type(model[0]) is nn.Linear and isinstance(model[1], Int4WeightOnlyLinear)
    assert "skipped 0: in_features 100" in str(model.quant_report)


def test_exclude_patterns_keep_layers_float():
    model = nn.ModuleDict({"enc": nn.Linear(64, 64), "proj_out": nn.Linear(64, 64)})
    quantize(model, "int8-dynamic", exclude=["proj_*"])
    assert isinstance(model["enc"], Int8DynamicLinear) and type(model["proj_out"]) is nn.Linear
    assert model.quant_report.skipped == (("proj_out", "excluded by pattern 'proj_*'"),)


def test_unknown_scheme_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown quantization scheme 'int3'.*int8-weight-only.*int8-dynamic"):
        quantize(nn.Linear(16, 16), "int3")


@pytest.mark.parametrize(
    "scheme,settings,message",
    [
        ("int4-weight-only", {"group_size": 48}, r"group_size must be one of \(32, 64, 128, 256\), got 48"),
        ("int8-weight-only", {"group_size": 64}, "has no setting.*group_size.*takes: compute_dtype"),
        ("int8-weight-only", {"compute_dtype": "fp8"}, "compute_dtype must be one of"),
        ("int8-dynamic", {"dense_above_rows": -1}, "dense_above_rows must be an int >= 0"),
        ("flexiq", {"fraction": 1.5}, r"fraction must be in \[0, 1\], got 1.5"),
        ("int8-dynamic", {"exclude": "proj_out"}, "exclude must be a tuple"),
    ],
)
def test_bad_settings_are_config_errors(scheme, settings, message):
    with pytest.raises(ConfigError, match=message):
        quantize(nn.Sequential(nn.Linear(64, 64)), scheme, **settings)


def test_quantize_changes_no_global_torch_state():
    before = (torch.get_default_dtype(), torch.get_num_threads(), torch.backends.quantized.engine)
    for scheme in SCHEMES:
        quantize(nn.Sequential(nn.Linear(64, 64)), scheme)
    assert (torch.get_default_dtype(), torch.get_num_threads(), torch.backends.quantized.engine) == before


def test_bf16_runs_small_calls_in_float32_and_larger_ones_in_bfloat16():
    layer = gaussian_linear(384, 384)
    model = quantize(nn.Sequential(copy.deepcopy(layer)), "bf16")
    with torch.inference_mode():
        small, large = torch.randn(4, 384), torch.randn(5, 384)
        assert torch.allclose(model(small), layer(small), atol=1e-5)
        assert 1e-5 < rel_err(model(large), layer(large)) < get_handler("bf16").error_bound


@pytest.mark.parametrize("rows", [1, 5, 40])
def test_bf16_large_weights_run_the_bfloat16_gemm_at_every_row_count(rows):
    # a vocabulary-sized weight never takes the float32 path (it does not stay in cache). Where
    # oneDNN takes bfloat16 the weight is prepacked for it; where it does not (an AVX2-only CPU) the
    # layer falls back to F.linear on the bfloat16 weight. Either must give what F.linear on the same
    # bfloat16 operands gives.
    layer = gaussian_linear(384, 6000)
    m = BFloat16Linear.from_float(layer)
    assert m.float32_up_to_rows == 0
    x = torch.randn(rows, 384)
    with torch.inference_mode():
        expected = F.linear(x.bfloat16(), layer.weight.bfloat16()).float() + layer.bias
        got = m(x)
    prepacked = m.prepare()[0] is not None
    assert prepacked == detect_cpu().onednn_bf16, "prepacked exactly where oneDNN runs bfloat16"
    # oneDNN may sum in another order: at most one bfloat16 rounding step apart
    assert torch.allclose(got, expected, rtol=2 ** -7, atol=1e-3)
    assert 1e-5 < rel_err(got, layer(x)) < get_handler("bf16").error_bound


def test_fp16_weights_compute_with_the_float16_rounded_weight_in_float32():
    """fbgemm's FP16 GEMM: the float16 weight widened, float32 products and sums (as F.linear on it)."""
    layer = gaussian_linear(384, 1536)
    x = torch.randn(3, 5, 384)
    q = quantize(copy.deepcopy(nn.Sequential(layer)), "fp16-weights")[0]
    ref = F.linear(x, layer.weight.half().float(), layer.bias)
    assert torch.allclose(q(x), ref, rtol=1e-5, atol=1e-5)
    assert rel_err(q(x), layer(x)) < 1e-3
