"""One Linear, two kernels, chosen per call by how many rows it gets.

A decoder's few rows per step (one token per conversation) are bound by the weight bytes they read:
the smallest weights win (int4). A prefill chunk's hundreds of rows are bound by arithmetic: the
fastest GEMM wins (int8 dynamic, with VNNI int32 accumulation). ``RowSplitLinear(few, many,
many_from_rows)`` holds both forms of the same weights and runs ``many`` on calls of at least
``many_from_rows`` rows, ``few`` below. ``split_by_rows(model, wide, many_from_rows)`` pairs every
quantized or float Linear of ``model`` with the same-named one of ``wide`` (the same architecture
quantized another way).

The two forms differ in rounding, so a row's result depends on how many rows its call had: with a
split, a sequence decoded alone and one decoded in a batch of many may differ in the last bits.
"""

from __future__ import annotations

import torch
from torch import nn

from streamrt.errors import ConfigError
from streamrt.quant.modules import QuantizedLinear


class RowSplitLinear(nn.Module):
    """``few(x)`` when ``x`` has fewer than ``many_from_rows`` rows (all leading dims together),
    else ``many(x)``; both map ``in_features`` to ``out_features``."""

    def __init__(self, few: nn.Module, many: nn.Module, many_from_rows: int):
        super().__init__()
        if not isinstance(many_from_rows, int) or many_from_rows < 2:
            raise ConfigError(f"many_from_rows must be an int >= 2 rows, got {many_from_rows!r}")
        self.few = few
        self.many = many
        self.many_from_rows = many_from_rows
        self.in_features = few.in_features
        self.out_features = few.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        return (self.many if rows >= self.many_from_rows else self.few)(x)

    def extra_repr(self) -> str:
        return f"many_from_rows={self.many_from_rows}"


def split_by_rows(model: nn.Module, wide: nn.Module, many_from_rows: int) -> list[str]:
    """Replace every Linear of ``model`` (``nn.Linear`` or a quantized one) by a ``RowSplitLinear``
    with the same-named module of ``wide`` as its ``many`` path. Returns the names replaced. Raises
    ConfigError when ``wide`` lacks one or its shape differs."""
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, QuantizedLinear))]
    for name in names:
        few = model.get_submodule(name)
        try:
            many = wide.get_submodule(name)
        except AttributeError:
            raise ConfigError(f"split_by_rows: the wide model has no module {name!r}") from None
        if (many.in_features, many.out_features) != (few.in_features, few.out_features):
            raise ConfigError(f"split_by_rows: {name} is {few.in_features}x{few.out_features} here but "
                              f"{many.in_features}x{many.out_features} in the wide model")
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, RowSplitLinear(few, many, many_from_rows))
    return names
