"""Quality metrics: WER (jiwer) and BLEU / chrF (sacrebleu), imported on first use."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from metrics import normalize as _normalize

Normalizer = Callable[[str], str]


def _resolve_normalizer(normalize: bool | str | Normalizer | None) -> Normalizer | None:
    if normalize is True or normalize == "english":
        return _normalize.english
    if normalize is None or normalize is False or normalize == "none":
        return None
    if normalize == "basic":
        return _normalize.basic
    if callable(normalize):
        return normalize
    raise ValueError(f"unknown WER normaliser {normalize!r}; use 'english', 'basic', 'none' or a function")


def _check_parallel(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")


def wer(hyps: Sequence[str], refs: Sequence[str], normalize: bool | str | Normalizer | None = True) -> float:
    """Corpus word error rate in percent: 100 * (S + D + I) / (reference words), over all pairs.

    ``normalize``: True/"english" (Whisper's English normaliser, the default), "basic" (case and
    whitespace), None/False (raw text), or a str -> str function, applied to both sides.
    An empty reference counts its hypothesis words as insertions; if no reference has any word,
    WER is 0 when no hypothesis has one either, else infinity.
    """
    import jiwer

    _check_parallel(hyps, refs)
    norm = _resolve_normalizer(normalize)
    if norm is not None:
        hyps = [norm(h) for h in hyps]
        refs = [norm(r) for r in refs]
    if not hyps:
        raise ValueError("no sentences to score")
    out = jiwer.process_words(list(refs), list(hyps))
    errors = out.substitutions + out.deletions + out.insertions
    ref_words = out.substitutions + out.deletions + out.hits
    if ref_words == 0:
        return 0.0 if errors == 0 else float("inf")
    return 100.0 * errors / ref_words


def bleu(hyps: Sequence[str], refs: Sequence[str], tokenize: str = "13a") -> float:
    """Corpus BLEU (sacrebleu, one reference per sentence), as SimulEval's and OmniSTEval's
    BLEU scorers compute it."""
    from sacrebleu.metrics.bleu import BLEU

    _check_parallel(hyps, refs)
    return BLEU(tokenize=tokenize).corpus_score(list(hyps), [list(refs)]).score


def chrf(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus chrF (sacrebleu defaults), as OmniSTEval's chrF scorer computes it."""
    from sacrebleu.metrics.chrf import CHRF

    _check_parallel(hyps, refs)
    return CHRF().corpus_score(list(hyps), [list(refs)]).score
