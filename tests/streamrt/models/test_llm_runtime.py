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


def test_prefill_precision_runs_many_rows_on_the_second_scheme_and_few_on_the_first():
    from streamrt.quant.by_rows import RowSplitLinear

    bundle = _bundle()
    ids = torch.randint(0, 96, (12,), generator=torch.Generator().manual_seed(1))
    lm, precision = build_lm(bundle, "fp16-weights", prefill_precision="int8-dynamic", prefill_from_rows=4)
    assert precision.scheme == "fp16-weights"
    assert lm.lm_precision.describe()["prefill_precision"] == "int8-dynamic"
    assert sum(isinstance(m, RowSplitLinear) for m in lm.modules()) == 2 * 4 + 1
    wide, _ = build_lm(bundle, "int8-dynamic")
    narrow, _ = build_lm(bundle, "fp16-weights")
    assert torch.equal(_logits(lm, ids), _logits(wide, ids))  # 12 rows: the prefill scheme
    assert torch.equal(_logits(lm, ids[:3]), _logits(narrow, ids[:3]))  # 3 rows: the decode scheme


def test_auto_for_the_llm_never_picks_bfloat16_and_splits_prefill_only_where_int8_is_fast():
    from streamrt.models.llm.runtime import choose_llm_auto
    from streamrt.quant.precision import CpuFeatures

    native = CpuFeatures("avx512", bf16_native=True, amx=False, onednn_bf16=True, fbgemm=True)
    avx2 = CpuFeatures("avx2", bf16_native=False, amx=False, onednn_bf16=False, fbgemm=True)
    bare = CpuFeatures("default", bf16_native=False, amx=False, onednn_bf16=False, fbgemm=False)
    decode, prefill = choose_llm_auto(native)
    assert (decode.scheme, prefill.scheme) == ("fp16-weights", "int8-dynamic")
    decode, prefill = choose_llm_auto(avx2)
    assert (decode.scheme, prefill) == ("fp16-weights", None)
    decode, prefill = choose_llm_auto(bare)
    assert (decode.scheme, prefill) == (None, None)
