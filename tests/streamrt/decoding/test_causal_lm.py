"""Our Llama-family forward equals transformers' on tiny random models of each supported family
(Llama with rope scaling, Qwen2 with q/k/v biases, Qwen3 with q/k norms, Gemma), over a prefill
then decode steps at per-slot positions, and refuses what it does not implement."""

from __future__ import annotations

import pytest
import torch

from streamrt.decoding.causal_lm import CausalLM
from streamrt.errors import ConfigError

COMMON = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128)


def _model(kind: str, **extra):
    import transformers

    config_cls, model_cls = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM),
        "gemma": (transformers.GemmaConfig, transformers.GemmaForCausalLM),
    }[kind]
    torch.manual_seed(0)
    model = model_cls(config_cls(**COMMON, **extra)).eval()
    with torch.no_grad():  # norms away from their all-ones (all-zeros for Gemma) initialisation
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


FAMILIES = [
    ("llama", dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 5000.0})),
    ("qwen2", {}),
    ("qwen3", dict(head_dim=16)),
    ("gemma", dict(head_dim=16, hidden_act="gelu_pytorch_tanh")),
]


@pytest.mark.parametrize("kind,extra", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_forward_equals_transformers_prefill_and_decode(kind, extra):
    hf = _model(kind, **extra)
    lm = CausalLM.from_hf(hf)
    cache = lm.new_cache(slots=3, max_seq=32)
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 97, (9,), generator=gen)
    b = torch.randint(0, 97, (5,), generator=gen)
    with torch.inference_mode():
        ref_a, ref_b = hf(a[None]).logits[0], hf(b[None]).logits[0]
        # a prefills 6 tokens into slot 2 while b prefills 5 into slot 0 (one forward), ...
        plan = lm.plan([(2, 0, 6), (0, 0, 5)], cache)
        out = lm(torch.cat([a[:6], b]), plan, cache, torch.arange(11))
        torch.testing.assert_close(out[:6], ref_a[:6], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out[6:], ref_b, atol=1e-4, rtol=1e-4)
        # ... then a decodes positions 6, 7 (one row per step) and finishes with a 1-token chunk
        for pos in (6, 7):
            out = lm(a[pos:pos + 1], lm.plan([(2, pos, 1)], cache), cache, torch.tensor([0]))
            torch.testing.assert_close(out[0], ref_a[pos], atol=1e-4, rtol=1e-4)
        out = lm(a[8:9], lm.plan([(2, 8, 1)], cache), cache, torch.tensor([0]))
        torch.testing.assert_close(out[0], ref_a[8], atol=1e-4, rtol=1e-4)


def test_refuses_unsupported_families_and_sliding_windows():
    import transformers

    with pytest.raises(ConfigError, match="not supported"):
        CausalLM.from_hf(_model("qwen2", use_sliding_window=True, sliding_window=16))
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50)
    with pytest.raises(ConfigError, match="model_type 'gpt2'"):
        CausalLM.from_hf(transformers.GPT2LMHeadModel(config))
