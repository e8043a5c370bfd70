"""build_lm: streamrt.quant's schemes applied to the LLM's Linear layers unchanged (every projection
and the output head), the transformers reference left in float, FlexiQ's knob turning the LLM's
precision at run time."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from streamrt.models.llm.runtime import build_lm
from streamrt.quant import PrecisionKnob


def _bundle():
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return SimpleNamespace(model=transformers.LlamaForCausalLM(config).eval())


def _logits(lm, ids):
    cache = lm.new_cache(1, 32)
    with torch.inference_mode():
        return lm(ids, lm.plan([(0, 0, len(ids))], cache), cache, torch.arange(len(ids)))


@pytest.mark.parametrize("scheme,rel", [("int8-weight-only", 0.03), ("int8-dynamic", 0.05), ("int4-weight-only", 0.3)])
def test_schemes_quantize_every_projection_within_their_bound(scheme, rel):
    bundle = _bundle()
    ids = torch.randint(0, 96, (12,), generator=torch.Generator().manual_seed(1))
    ref = _logits(build_lm(bundle, "fp32")[0], ids)
    lm, precision = build_lm(bundle, scheme, **({"group_size": 32} if scheme.startswith("int4") else {}))
    assert precision.scheme == scheme
    assert len(lm.quant_report.quantized) == 2 * 4 + 1 and not lm.quant_report.skipped  # 4 per block + lm_head
    err = (_logits(lm, ids) - ref).norm() / ref.norm()
    assert 0 < err < rel
    assert type(bundle.model.lm_head) is torch.nn.Linear  # the reference stays float


def test_flexiq_knob_turns_the_llm_precision():
    bundle = _bundle()
    ids = torch.randint(0, 96, (12,), generator=torch.Generator().manual_seed(1))
    ref = _logits(build_lm(bundle, "fp32")[0], ids)
    lm, _ = build_lm(bundle, "flexiq", group_size=32, fraction=0.0)
    knob = PrecisionKnob.of(lm)
    errors = []
    for fraction in (0.0, 1.0):
        knob.set(fraction)
        errors.append(float((_logits(lm, ids) - ref).norm() / ref.norm()))
    assert errors[0] < errors[1]  # all channels in int4 costs more than all in int8
