"""RowSplitLinear: one Linear, two kernels chosen by the call's row count (streamrt.quant.by_rows)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from streamrt.errors import ConfigError
from streamrt.quant import quantize
from streamrt.quant.by_rows import RowSplitLinear, split_by_rows


def _pair():
    torch.manual_seed(0)
    few = nn.Sequential(nn.Linear(64, 48))
    many = nn.Sequential(nn.Linear(64, 48))
    many.load_state_dict(few.state_dict())
    quantize(many, "int8-dynamic")  # other rounding: which path ran shows in the output
    return few, many


def test_calls_below_the_threshold_run_few_and_from_it_on_run_many():
    few, many = _pair()
    split = RowSplitLinear(few[0], many[0], many_from_rows=4)
    with torch.inference_mode():
        for shape in ((3, 64), (1, 3, 64)):
            x = torch.randn(shape)
            assert torch.equal(split(x), few[0](x)) and not torch.equal(split(x), many[0](x))
        for shape in ((4, 64), (2, 2, 64), (50, 64)):
            x = torch.randn(shape)
            assert torch.equal(split(x), many[0](x)) and not torch.equal(split(x), few[0](x))


def test_split_by_rows_pairs_same_named_layers_and_names_a_mismatch():
    few, many = _pair()
    assert split_by_rows(few, many, 8) == ["0"]
    assert isinstance(few[0], RowSplitLinear) and few[0].many is many[0]
    with pytest.raises(ConfigError, match="0 is 64x48 here but 64x32"):
        split_by_rows(nn.Sequential(nn.Linear(64, 48)), nn.Sequential(nn.Linear(64, 32)), 8)
    with pytest.raises(ConfigError, match="many_from_rows"):
        RowSplitLinear(nn.Linear(4, 4), nn.Linear(4, 4), 1)
