"""``streamrt bench llm-quality``: what each quantization scheme costs the LLM, against float32.

Per precision (one JSON line each):
- ``greedy_agreement``: the float32 model's greedy continuations of ``PROMPTS`` (``tokens`` each) fed
  back teacher-forced; the share of positions where this precision's argmax is the same token;
- ``greedy_same_prefix``: mean tokens a free-running greedy reply stays identical to float32's;
- ``perplexity``: on ``data/llm_text.txt`` (a paragraph written for this; not in any training set
  we know of), one teacher-forced pass.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

PROMPTS = ("What is the capital of France?", "Write a haiku about the sea.",
           "Explain in two sentences why the sky is blue.", "Give me three tips for a job interview.")
PRECISIONS = ("fp32", "bf16", "int8-weight-only", "int8-dynamic", "int4-weight-only", "int4-weight-only@32",
              "flexiq:0.0", "flexiq:0.5", "flexiq:1.0")
TEXT = Path(__file__).resolve().parents[2] / "data" / "llm_text.txt"


def parse_precision(name: str) -> tuple[str, dict[str, Any]]:
    """"flexiq:0.5" -> ("flexiq", {"fraction": 0.5}); "int4-weight-only@32" -> group_size 32;
    "fp16-weights+int8-dynamic" -> prefill_precision int8-dynamic (calls of 4 rows or more)."""
    name, _, prefill = name.partition("+")
    name, _, group = name.partition("@")
    scheme, _, fraction = name.partition(":")
    settings: dict[str, Any] = {"fraction": float(fraction)} if fraction else {}
    if group:
        settings["group_size"] = int(group)
    if prefill:
        settings["prefill_precision"] = prefill
    return scheme, settings


def _logits_all(lm: Any, ids: list[int]) -> torch.Tensor:
    cache = lm.new_cache(1, len(ids))
    with torch.inference_mode():
        return lm(torch.tensor(ids), lm.plan([(0, 0, len(ids))], cache), cache, torch.arange(len(ids)))


def _greedy(lm: Any, bundle: Any, ids: list[int], tokens: int) -> list[int]:
    from streamrt.decoding.llm_batch import DecoderSettings, LlmDecoder
    from streamrt.decoding.llm_sampling import SamplingSettings

    decoder = LlmDecoder.from_bundle(bundle, DecoderSettings(max_slots=1, max_context_tokens=len(ids) + tokens + 1),
                                     lm=lm)
    conv = decoder.open()
    conv.append(ids)
    conv.start_reply(SamplingSettings(max_new_tokens=tokens, end_tokens=()))
    out: list[int] = []
    while conv.reply is not None:
        out += decoder.step([conv])[0].tokens
    return out


def perplexity(lm: Any, ids: list[int]) -> float:
    logits = _logits_all(lm, ids)[:-1]
    nll = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]))
    return math.exp(float(nll))


def quality_rows(bundle: Any, precisions: tuple[str, ...] = PRECISIONS, tokens: int = 64) -> list[dict]:
    from streamrt.models.llm.runtime import build_lm

    text_ids = [bundle.tokenizer.bos_token_id or 0] + bundle.encode(TEXT.read_text())
    ref_lm, _ = build_lm(bundle, "fp32")
    prompts = [bundle.chat_ids([{"role": "user", "content": p}]) for p in PROMPTS]
    ref = [_greedy(ref_lm, bundle, ids, tokens) for ids in prompts]
    rows = []
    for name in precisions:
        scheme, settings = parse_precision(name)
        lm, precision = build_lm(bundle, scheme, **settings)
        agree = total = same = 0
        for ids, cont in zip(prompts, ref):
            pred = _logits_all(lm, ids + cont)[len(ids) - 1: -1].argmax(-1).tolist()
            agree += sum(int(a == b) for a, b in zip(pred, cont))
            total += len(cont)
            run = _greedy(lm, bundle, ids, tokens)
            same += next((i for i, (a, b) in enumerate(zip(run, cont)) if a != b), len(cont))
        rows.append({"precision": name, "greedy_agreement": round(agree / total, 4),
                     "greedy_same_prefix": round(same / len(prompts), 1),
                     "perplexity": round(perplexity(lm, text_ids), 3), "text_tokens": len(text_ids),
                     "tokens_per_prompt": tokens, "prompts": len(prompts), "cpu_capability": precision.cpu.label})
    return rows


def register(app) -> None:
    import typer

    @app.command("llm-quality")
    def llm_quality(
        model: str = typer.Option("smollm2-135m", help="packaged LLM name or a Hugging Face causal-LM folder"),
        precisions: str = typer.Option(",".join(PRECISIONS), help="comma-separated; flexiq:F sets its fraction"),
        tokens: int = typer.Option(64, help="greedy tokens per prompt"),
        threads: int = typer.Option(1, help="torch threads"),
    ) -> None:
        """Greedy agreement with float32 and perplexity per quantization scheme (one JSON line each)."""
        from streamrt.models.llm import load_llm

        torch.set_num_threads(threads)
        bundle = load_llm(model)
        for row in quality_rows(bundle, tuple(p for p in precisions.split(",") if p), tokens):
            typer.echo(json.dumps(row))
