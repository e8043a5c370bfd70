"""FlexiQ-style mixed precision: the runtime knob over int4/int8 output channels."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from torch import nn

from streamrt.errors import ConfigError
from streamrt.quant import MixedPrecisionLinear, PrecisionKnob, quantize, set_low_precision_fraction

FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


def two_layer(seed: int = 0) -> nn.Sequential:
    """256 -> 256 -> 128 with channel ranges spread 15x apart, so which channels go low matters."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 128))
    for layer in (model[0], model[2]):
        spread = torch.linspace(0.2, 3.0, layer.out_features)[torch.randperm(layer.out_features)]
        layer.weight.data.normal_(0, 0.05).mul_(spread[:, None])
    return model.eval()


def rel_err(y, ref) -> float:
    return ((y - ref).norm() / ref.norm()).item()


@pytest.mark.parametrize("rows", [1, 5, 100, 200])  # >16 rows: int8 dense; >128: int4 dense too
@pytest.mark.parametrize("out_features", [200, 51])  # 51: padded to the int4 kernel's 16 rows
def test_knob_ends_equal_pure_schemes_exactly(rows, out_features):
    torch.manual_seed(3)
    layer = nn.Linear(256, out_features)
    flexiq = quantize(nn.Sequential(copy.deepcopy(layer)), "flexiq", group_size=64)
    int8 = quantize(nn.Sequential(copy.deepcopy(layer)), "int8-weight-only")
    int4 = quantize(nn.Sequential(copy.deepcopy(layer)), "int4-weight-only", group_size=64)
    knob = PrecisionKnob.of(flexiq)
    x = torch.randn(rows, 256)
    knob.set(0.0)
    assert torch.equal(flexiq(x), int8(x))
    knob.set(1.0)
    assert torch.equal(flexiq(x), int4(x))
    knob.set(0.0)  # and back, without re-quantizing
    assert torch.equal(flexiq(x), int8(x))


@pytest.mark.parametrize("rows", [1, 200])
def test_error_grows_monotonically_with_fraction(rows):
    model = two_layer()
    reference = copy.deepcopy(model)
    quantize(model, "flexiq", group_size=64)
    knob = PrecisionKnob.of(model)
    x = torch.randn(rows, 256)
    errors = []
    for f in FRACTIONS:
        knob.set(f)
        errors.append(rel_err(model(x), reference(x)))
    assert errors == sorted(errors), errors
    assert errors[-1] > 3 * errors[0]


def test_smallest_range_channels_go_low_first():
    torch.manual_seed(0)
    layer = nn.Linear(64, 64)
    ranges = torch.linspace(0.1, 6.4, 64)[torch.randperm(64)]
    layer.weight.data = torch.rand(64, 64) * ranges[:, None]
    m = MixedPrecisionLinear.from_float(layer, group_size=32)
    w8 = m.dequantized_weight()
    m.set_fraction(0.25)  # 16 channels
    changed = (m.dequantized_weight() != w8).any(dim=1).nonzero().flatten()
    assert set(changed.tolist()) == set(torch.argsort(ranges)[:16].tolist())


def test_knob_is_one_object_over_all_layers():
    model = two_layer()
    quantize(model, "flexiq", fraction=0.5)
    knob = PrecisionKnob.of(model)
    assert [name for name, _ in knob.layers] == ["0", "2"] and knob.fraction == 0.5
    knob.set(0.75)
    assert knob.fraction == 0.75 and all(layer.fraction == 0.75 for _, layer in knob.layers)
    assert knob.applied_fraction() == pytest.approx(0.75, abs=16 / 128)
    assert set_low_precision_fraction(model, 0.25).fraction == 0.25


def test_setting_the_knob_does_not_requantize():
    model = quantize(two_layer(), "flexiq")
    layer = model[0]
    stored = {k: v.data_ptr() for k, v in layer.state_dict().items()}
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    for f in FRACTIONS:
        set_low_precision_fraction(model, f)
        model(torch.randn(2, 256))
    assert {k: v.data_ptr() for k, v in layer.state_dict().items()} == stored
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())


def test_fraction_rounds_to_blocks_of_16_channels():
    m = MixedPrecisionLinear.from_float(nn.Linear(64, 200), group_size=32)
    assert [m.low_rows(f) for f in (0.0, 0.03, 0.05, 0.5, 0.99, 1.0)] == [0, 0, 16, 96, 192, 208]
    m.set_fraction(0.5)
    assert m.applied_fraction == 96 / 200


@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan")])
def test_bad_fraction_is_a_config_error(bad):
    model = quantize(two_layer(), "flexiq")
    with pytest.raises(ConfigError, match=r"fraction must be in \[0, 1\]"):
        set_low_precision_fraction(model, bad)


def test_knob_on_a_model_without_flexiq_layers_says_so():
    with pytest.raises(ConfigError, match="quantize the model with scheme 'flexiq' first"):
        set_low_precision_fraction(quantize(nn.Sequential(nn.Linear(64, 64)), "int8-dynamic"), 0.5)


def test_knob_set_from_another_thread_between_forwards():
    model = quantize(two_layer(), "flexiq")
    knob = PrecisionKnob.of(model)
    x = torch.randn(3, 256)
    knob.set(1.0)
    low = model(x)
    knob.set(0.0)
    thread = threading.Thread(target=knob.set, args=(1.0,))
    thread.start()
    thread.join()
    assert torch.equal(model(x), low)
