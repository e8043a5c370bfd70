"""Corpus scores of a short-form log (one instance per sentence): latency, and quality when the
log carries references.

Corpus latency is the mean of the sentence scores over the sentences the reference tool keeps
(SimulEval skips a sentence with no delays; OmniSTEval's YAAL also drops one whose first unit
comes at/after the source end). A metric no sentence contributes to is NaN.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

from metrics import latency
from metrics.io import Instance, check_instance_units
from metrics.units import PieceEncoder, load_spm, reference_length
from streamrt.errors import LogFormatError

LATENCY_METRICS = ("AL", "LAAL", "DAL", "AP", "ATD", "YAAL")


def corpus_mean(scores: Sequence[float | None]) -> float:
    """Mean of the sentence scores that are not None; NaN when there are none."""
    kept = [s for s in scores if s is not None]
    return statistics.mean(kept) if kept else math.nan  # exact mean, as the reference tools


def sentence_latency(
    name: str,
    times: Sequence[float],
    ins: Instance,
    unit: str,
    spm: PieceEncoder | None = None,
    delays: Sequence[float] | None = None,
) -> float | None:
    """One sentence's ``name`` score on ``times`` (its delays, or its elapsed for _CA).

    |Y| is the reference length in ``unit`` (SimulEval's count for AL/LAAL/AP, OmniSTEval's count
    of the stripped reference for YAAL), or |Y*| = len(times) when the instance has no reference.
    ``delays`` is needed for the computation-aware ATD (compute time = elapsed - delays).
    """
    if ins.reference is None:
        tgt_len = len(times)
        yaal_len = len(times)
    else:
        tgt_len = reference_length(ins.reference, unit, spm)
        yaal_len = reference_length(ins.reference.strip(), unit, spm)
    src = ins.source_length
    if name == "AL":
        return latency.average_lagging(times, src, tgt_len)
    if name == "LAAL":
        return latency.length_adaptive_average_lagging(times, src, tgt_len)
    if name == "DAL":
        return latency.differentiable_average_lagging(times, src)
    if name == "AP":
        return latency.average_proportion(times, src, tgt_len)
    if name == "YAAL":
        return latency.yet_another_average_lagging(times, src, yaal_len)
    if name == "ATD":
        if delays is None:
            return latency.average_token_delay(times)
        return latency.average_token_delay(delays, times)
    raise ValueError(f"unknown latency metric {name!r}; known: {', '.join(LATENCY_METRICS)}")


def latency_scores(
    instances: Sequence[Instance],
    unit: str = "word",
    computation_aware: bool = False,
    spm: PieceEncoder | None = None,
    metric_names: Sequence[str] = LATENCY_METRICS,
) -> dict[str, float]:
    """Corpus latency: ``{name: score}`` and, with ``computation_aware``, ``{name_CA: score}``
    computed on ``elapsed`` (ATD_CA: delays plus per-unit compute time, as SimulEval does)."""
    out: dict[str, float] = {}
    for name in metric_names:
        out[name] = corpus_mean([sentence_latency(name, ins.delays, ins, unit, spm) for ins in instances])
    if computation_aware:
        for name in metric_names:
            delays_of = (lambda ins: ins.delays) if name == "ATD" else (lambda ins: None)
            scores = [sentence_latency(name, ins.elapsed, ins, unit, spm, delays_of(ins)) for ins in instances]
            out[f"{name}_CA"] = corpus_mean(scores)
    return out


def check_instances(instances: Sequence[Instance], unit: str, computation_aware: bool) -> None:
    """Raise LogFormatError (path ``<instances>``, line = position + 1) for an unusable instance."""
    if not instances:
        raise LogFormatError("<instances>", 1, "no instances to score")
    for pos, ins in enumerate(instances, 1):
        problem = check_instance_units(ins, unit)
        if problem is None and computation_aware and len(ins.elapsed) != len(ins.delays):
            problem = f"'elapsed' has {len(ins.elapsed)} entries but 'delays' has {len(ins.delays)}"
        if problem is None and not ins.source_length > 0:
            problem = f"'source_length' must be positive, got {ins.source_length!r}"
        if problem:
            raise LogFormatError("<instances>", pos, f"instance {ins.index}: {problem}")


def score(
    instances: Sequence[Instance],
    unit: str = "word",
    computation_aware: bool = False,
    *,
    spm_model: str | None = None,
    wer_normalizer: Callable[[str], str] | None | str = "english",
) -> dict[str, float]:
    """Corpus scores of short-form instances.

    Keys: AL, LAAL, DAL, AP, ATD, YAAL; with ``computation_aware`` also AL_CA ... YAAL_CA; and
    BLEU and WER (percent) when every instance has a reference. ``unit`` is word, char or spm
    (spm needs ``spm_model``, a SentencePiece model file). ``wer_normalizer``: "english" (the
    Whisper English normaliser), None (raw text) or any str -> str function.
    NaN marks a latency metric no sentence contributes to.
    """
    check_instances(instances, unit, computation_aware)
    if unit == "spm" and spm_model is None:
        raise ValueError("the 'spm' latency unit needs spm_model, the target SentencePiece model file")
    spm = load_spm(spm_model) if unit == "spm" else None
    out = latency_scores(instances, unit, computation_aware, spm)
    if all(ins.reference is not None for ins in instances):
        from metrics import quality

        hyps = [ins.prediction for ins in instances]
        refs = [ins.reference for ins in instances]
        out["BLEU"] = quality.bleu(hyps, refs)
        out["WER"] = quality.wer(hyps, refs, normalize=wer_normalizer)
    return out
