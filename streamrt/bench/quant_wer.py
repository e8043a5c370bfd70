"""WER (and latency) of each quantized variant on a test set, one fixed policy and encoder.

Not a test: it decodes a data set once per variant of ``streamrt.quant.quantized_variants()``
(fp32, int8 weight-only, int8 dynamic, int4 weight-only, bf16, FlexiQ at 0/25/50/75/100 %) through
``WhisperStreamingModel`` (``quantize=`` at load) and ``streamrt.evaluation.runner.evaluate_streaming``
(simulated real time, as ``streamrt eval run`` does). Decoding uses an injected manual clock, so
the text and the non-computation-aware latencies do not depend on machine load; ``rtf`` is the
process CPU time per audio second (``ProcessClock``), which does.

    PYTHONPATH=. python -m streamrt.bench.quant_wer --data data/testset.tsv --threads 1
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence


def variant_wer(
    data: str = "data/testset.tsv",
    *,
    model_name: str = "tiny.en",
    encoder_mode: str = "block-causal",
    chunk_ms: int = 1000,
    policy: str = "local-agreement",
    policy_options: dict[str, Any] | None = None,
    labels: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """One row per variant: label, WER (%), LAAL/AL (ms, without computation), rtf, seconds."""
    from streamrt.evaluation.runner import ProcessClock, evaluate_streaming
    from streamrt.quant import quantized_variants
    from streamrt.tasks.whisper_stream import WhisperStreamingModel

    rows = []
    for v in quantized_variants():
        if labels is not None and v.label not in labels:
            continue
        t0 = time.perf_counter()
        model = WhisperStreamingModel.from_pretrained(
            model_name, encoder_mode=encoder_mode, chunk_ms=chunk_ms, quantize=v.scheme,
            quantize_settings=v.settings or None,
        )
        if v.fraction is not None:
            model.set_low_precision_fraction(v.fraction)
        options = {"policy": policy, "policy_options": dict(policy_options or {})}
        result = evaluate_streaming(model, data, options=options, feed_ms=chunk_ms, clock=ProcessClock(),
                                    limit=limit)
        sc = result.scores
        rows.append({
            "variant": v.label,
            "WER": sc.get("WER"),
            "LAAL": sc.get("LAAL"),
            "AL": sc.get("AL"),
            "LAAL_CA": sc.get("LAAL_CA"),
            "rtf": sc.get("RTF"),
            "utterances": len(result.utterances),
            "errors": result.errors[:3],
            "seconds": round(time.perf_counter() - t0, 1),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        })
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/testset.tsv")
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--encoder-mode", default="block-causal")
    p.add_argument("--chunk-ms", type=int, default=1000)
    p.add_argument("--policy", default="local-agreement")
    p.add_argument("--policy-options", default=None, help="JSON")
    p.add_argument("--variants", default=None, help="comma-separated labels (default: all)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads in this process")
    a = p.parse_args(argv)
    if a.threads is not None:
        import torch

        torch.set_num_threads(a.threads)
    rows = variant_wer(
        a.data, model_name=a.model, encoder_mode=a.encoder_mode, chunk_ms=a.chunk_ms, policy=a.policy,
        policy_options=json.loads(a.policy_options) if a.policy_options else None,
        labels=a.variants.split(",") if a.variants else None, limit=a.limit,
    )
    for row in rows:
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
