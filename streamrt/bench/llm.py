"""``streamrt bench llm``: our causal-LM decoder beside llama.cpp (xllamacpp) on the same GGUF.

Figures (one JSON object), both peers measured in the same process, one after the other, so that a
shared machine's load touches both alike:

- ``single_tok_s``: one conversation, greedy, ``new_tokens`` after a ``prompt_tokens`` prompt, the
  decode steps only (llama.cpp's ``predicted_per_second`` is the same quantity);
- ``ttft_ms``: the prompt's prefill to its first token (median of ``repeats``);
- ``batched_tok_s``: ``batch`` conversations started together through the decoder's continuous
  batching, all their new tokens over the wall time from start to the last one's end (prefill in);
- ``scheduler_batched_tok_s``: the same ``batch`` conversations as chat turns through a real
  ``Scheduler`` (``streamrt.tasks.llm_conversation``, wall clock): what batching costs in the
  scheduler's hands (turn re-templating, step planning, the event loop) beside ``batched_tok_s``;
- ``reference_tok_s`` / ``reference_ttft_ms``: llama.cpp, one sequence, ``threads`` threads;
- ``reference_batched_tok_s``: llama.cpp with ``batch`` parallel sequences, measured like ours;
- ``greedy_matches_reference``: our float32 greedy tokens equal transformers' ``generate`` on
  ``GREEDY_PROMPTS`` (whatever precision the speed figures use).

``precision`` defaults to ``auto`` (``streamrt.models.llm.runtime.choose_llm_auto``); when a second
scheme runs calls of many rows, ``prefill_precision`` and ``prefill_from_rows`` say so.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

QUESTION = ("Here is a page from a lighthouse keeper's log. Summarise it, then say what the keeper "
            "meant about conversations. ")
GREEDY_PROMPTS = ("What is the capital of France?", "Write a haiku about the sea.",
                  "Explain in two sentences why the sky is blue.")
GREEDY_TOKENS = 24


@dataclass(frozen=True)
class LlmBenchSettings:
    model: str = "smollm2-135m"
    precision: str = "auto"
    threads: int = 1
    prompt_tokens: int = 200
    new_tokens: int = 128
    batch: int = 16
    repeats: int = 3
    reference: bool = True
    group_size: int | None = 32  # int4 / flexiq group size: 32 = the GGUF's Q4_1 blocks
    draft_tokens: int | None = None  # prompt-lookup speculative decoding (None: off)
    prefill_precision: str | None = None  # a second scheme for calls of >= prefill_from_rows rows
    prefill_from_rows: int = 4


def _request(variant: int) -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "data" / "llm_text.txt")
    page = text.read_text() if text.is_file() else QUESTION * 20
    return f"Request {variant}. {QUESTION}\n\n{page * 3}"


def bench_prompt(bundle: Any, tokens: int, variant: int = 0) -> list[int]:
    """A chat prompt of exactly ``tokens`` tokens (a log page, cut); ``variant`` changes its start."""
    return bundle.chat_ids([{"role": "user", "content": _request(variant)}])[:tokens]


def time_scheduler(bundle: Any, lm: Any, s: LlmBenchSettings, cache_bf16: bool = False,
                   clock=time.perf_counter) -> dict[str, float]:
    """``batch`` chat turns (the user text cut to about ``prompt_tokens`` tokens) through a Scheduler."""
    import asyncio

    from streamrt.clock import MonotonicClock
    from streamrt.decoding.llm_batch import DecoderSettings, LlmDecoder
    from streamrt.decoding.llm_sampling import SamplingSettings
    from streamrt.scheduler import Scheduler
    from streamrt.stream_session import StepOutput, StreamSession
    from streamrt.tasks.llm_conversation import ConversationSettings, LlmConversationModel
    from streamrt.types import TextDelta

    settings = DecoderSettings(max_slots=s.batch, max_context_tokens=s.prompt_tokens + s.new_tokens + 64,
                               prefill_tokens_per_step=max(s.prompt_tokens, s.batch) + s.batch,
                               cache_dtype="bfloat16" if cache_bf16 else "float32", draft_tokens=s.draft_tokens)
    model = LlmConversationModel(bundle, LlmDecoder.from_bundle(bundle, settings, lm=lm), ConversationSettings(
        sampling=SamplingSettings(max_new_tokens=s.new_tokens, end_tokens=())))
    texts = [bundle.decode(bundle.encode(_request(i))[: max(s.prompt_tokens - 40, 8)]) for i in range(s.batch)]

    async def run() -> float:
        sched = Scheduler(model, clock=MonotonicClock())
        await sched.start()
        chats = [StreamSession(model.create_stream(), sched.clock) for _ in texts]
        t0 = clock()
        for chat, text in zip(chats, texts):
            sched.add(chat)
            chat.receive(TextDelta(text, end_of_turn=True))
            chat.receive_eof()
            sched.wake(chat)
        await sched.wait_idle()
        wall = clock() - t0
        await sched.stop()
        return sum(len(e.result.tokens) for c in chats for e in c.events() if isinstance(e, StepOutput)) / wall

    return {"scheduler_batched_tok_s": round(asyncio.run(run()), 1)}


def greedy_matches_transformers(bundle: Any, lm: Any) -> bool:
    """Our greedy tokens == transformers' generate on ``GREEDY_PROMPTS`` (float32 weights)."""
    import torch

    from streamrt.decoding.llm_batch import DecoderSettings, LlmDecoder
    from streamrt.decoding.llm_sampling import SamplingSettings

    decoder = LlmDecoder.from_bundle(bundle, DecoderSettings(max_slots=1, max_context_tokens=256), lm=lm)
    for question in GREEDY_PROMPTS:
        ids = bundle.chat_ids([{"role": "user", "content": question}])
        with torch.inference_mode():
            ref = bundle.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                        max_new_tokens=GREEDY_TOKENS, do_sample=False, eos_token_id=None,
                                        pad_token_id=bundle.tokenizer.eos_token_id)[0, len(ids):].tolist()
        conv = decoder.open()
        conv.append(ids)
        conv.start_reply(SamplingSettings(max_new_tokens=GREEDY_TOKENS, end_tokens=()))
        ours: list[int] = []
        while conv.reply is not None:
            ours += decoder.step([conv])[0].tokens
        decoder.close(conv)
        if ours != ref:
            return False
    return True


def time_ours(bundle: Any, lm: Any, s: LlmBenchSettings, cache_bf16: bool = False,
              clock=time.perf_counter) -> dict[str, float]:
    from streamrt.decoding.llm_batch import DecoderSettings, LlmDecoder
    from streamrt.decoding.llm_sampling import SamplingSettings

    settings = DecoderSettings(max_slots=s.batch, max_context_tokens=s.prompt_tokens + s.new_tokens + 8,
                               prefill_tokens_per_step=max(s.prompt_tokens, s.batch) + s.batch,
                               cache_dtype="bfloat16" if cache_bf16 else "float32", draft_tokens=s.draft_tokens)
    decoder = LlmDecoder.from_bundle(bundle, settings, lm=lm)
    sampling = SamplingSettings(max_new_tokens=s.new_tokens, end_tokens=())
    ttfts, rates, drafted, accepted = [], [], 0, 0
    for r in range(s.repeats):
        conv = decoder.open()
        conv.append(bench_prompt(bundle, s.prompt_tokens, r))
        conv.start_reply(sampling)
        t0 = clock()
        decoder.step([conv])
        t1 = clock()
        reply, produced = conv.reply, 0
        while conv.reply is not None:
            produced += len(decoder.step([conv])[0].tokens)
        ttfts.append((t1 - t0) * 1000)
        rates.append(produced / max(clock() - t1, 1e-9))
        drafted, accepted = drafted + reply.drafted, accepted + reply.accepted
        decoder.close(conv)
    convs = [decoder.open() for _ in range(s.batch)]
    for i, conv in enumerate(convs):
        conv.append(bench_prompt(bundle, s.prompt_tokens, i))
        conv.start_reply(sampling)
    t0, produced = clock(), 0
    while any(c.reply is not None for c in convs):
        produced += sum(len(o.tokens) for o in decoder.step([c for c in convs if c.reply is not None]))
    wall = clock() - t0
    out = {"ttft_ms": round(statistics.median(ttfts), 1), "single_tok_s": round(statistics.median(rates), 1),
           "batched_tok_s": round(produced / wall, 1)}
    if s.draft_tokens:
        out["draft_acceptance"] = round(accepted / max(drafted, 1), 3)
        out["drafted_per_new_token"] = round(drafted / max(s.repeats * (s.new_tokens - 1), 1), 3)
    return out


def time_llama_cpp(gguf: str, prompts: list[list[int]], s: LlmBenchSettings, clock=time.perf_counter) -> dict[str, Any]:
    """llama.cpp (xllamacpp) on the GGUF: one sequence ``repeats`` times, then ``batch`` in parallel."""
    try:
        import xllamacpp
    except ImportError:
        return {"reference": "xllamacpp is not installed (pip install xllamacpp)"}

    def server(parallel: int):
        params = xllamacpp.CommonParams()
        params.model.path = gguf
        params.n_parallel = parallel
        params.n_ctx = parallel * (s.prompt_tokens + s.new_tokens + 64)
        params.cpuparams.n_threads = s.threads
        params.cpuparams_batch.n_threads = s.threads
        params.sampling.temp = 0.0
        return xllamacpp.Server(params)

    def request(srv, ids: list[int]) -> dict:
        return srv.handle_completions({"prompt": ids, "n_predict": s.new_tokens, "temperature": 0.0,
                                       "ignore_eos": True, "cache_prompt": False})

    single = server(1)
    timings = [request(single, prompts[r % len(prompts)])["timings"] for r in range(s.repeats)]
    del single
    out: dict[str, Any] = {
        "reference_tok_s": round(statistics.median(t["predicted_per_second"] for t in timings), 1),
        "reference_ttft_ms": round(statistics.median(t["prompt_ms"] for t in timings), 1),
    }
    parallel = server(s.batch)
    results: list[dict] = []
    threads = [threading.Thread(target=lambda ids=ids, srv=parallel: results.append(request(srv, ids))) for ids in prompts]
    t0 = clock()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = clock() - t0
    del parallel
    tokens = sum(r["usage"]["completion_tokens"] for r in results)
    out["reference_batched_tok_s"] = round(tokens / wall, 1)
    return out


def run_llm_bench(s: LlmBenchSettings) -> dict[str, Any]:
    import torch

    from streamrt.decoding.causal_lm import CausalLM
    from streamrt.models.llm import load_llm
    from streamrt.models.llm.runtime import build_lm

    torch.set_num_threads(s.threads)
    bundle = load_llm(s.model)
    grouped = s.precision in ("int4-weight-only", "flexiq") and s.group_size
    lm, precision = build_lm(bundle, s.precision, prefill_precision=s.prefill_precision,
                             prefill_from_rows=s.prefill_from_rows, **({"group_size": s.group_size} if grouped else {}))
    result: dict[str, Any] = {"model": s.model, **lm.lm_precision.describe(), "threads": s.threads,
                              "prompt_tokens": s.prompt_tokens, "new_tokens": s.new_tokens, "batch": s.batch}
    result["greedy_matches_reference"] = greedy_matches_transformers(bundle, CausalLM.from_hf(bundle.model))
    result.update(time_ours(bundle, lm, s, cache_bf16=precision.attention_dtype == torch.bfloat16))
    result.update(time_scheduler(bundle, lm, s, cache_bf16=precision.attention_dtype == torch.bfloat16))
    if s.reference and bundle.gguf:
        prompts = [bench_prompt(bundle, s.prompt_tokens, i) for i in range(s.batch)]
        result.update(time_llama_cpp(bundle.gguf, prompts, s))
    if "reference_tok_s" in result:
        result["single_vs_reference"] = round(result["single_tok_s"] / result["reference_tok_s"], 2)
        result["batched_vs_reference_single"] = round(result["batched_tok_s"] / result["reference_tok_s"], 2)
    result["settings"] = asdict(s)
    return result


def register(app) -> None:
    """Add ``llm`` to the ``streamrt bench`` typer app (torch is imported only when it runs)."""
    import json

    import typer

    @app.command("llm")
    def llm(
        model: str = typer.Option("smollm2-135m", help="packaged LLM name or a Hugging Face causal-LM folder"),
        precision: str = typer.Option("auto", help="auto (by this CPU; docs/llm.md), fp32, bf16, fp16-weights, "
                                      "int8-weight-only, int8-dynamic, int4-weight-only, flexiq"),
        threads: int = typer.Option(1, help="torch threads and llama.cpp threads"),
        prompt_tokens: int = typer.Option(200, help="prompt length (tokens)"),
        new_tokens: int = typer.Option(128, help="tokens generated per conversation"),
        batch: int = typer.Option(16, help="concurrent conversations for the batched figures"),
        repeats: int = typer.Option(3, help="single-conversation runs (median reported)"),
        reference: bool = typer.Option(True, help="also run llama.cpp (xllamacpp) on the same GGUF"),
        group_size: int = typer.Option(32, help="int4/flexiq group size (32 = the GGUF's Q4_1 blocks)"),
        draft_tokens: int = typer.Option(None, help="prompt-lookup speculative decoding: max drafted tokens per step"),
        prefill_precision: str = typer.Option(None, help="a second scheme (e.g. int8-dynamic) for calls of at least "
                                              "--prefill-from-rows rows: prefill chunks, big decode batches"),
        prefill_from_rows: int = typer.Option(4, help="rows from which --prefill-precision runs"),
        format: str = typer.Option("json", "--format", help="json (one object)"),
    ) -> None:
        """Tokens/s and time to first token of the LLM decoder, beside llama.cpp on the same GGUF."""
        if format != "json":
            raise typer.BadParameter(f"--format must be json, not {format!r}")
        s = LlmBenchSettings(model=model, precision=precision, threads=threads, prompt_tokens=prompt_tokens,
                             new_tokens=new_tokens, batch=batch, repeats=repeats, reference=reference,
                             group_size=group_size, draft_tokens=draft_tokens,
                             prefill_precision=prefill_precision, prefill_from_rows=prefill_from_rows)
        typer.echo(json.dumps(run_llm_bench(s)))
