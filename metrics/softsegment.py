"""SoftSegmenter resegmentation and LongYAAL, as OmniSTEval 0.1.10 computes them.

Polák et al. 2025, "Better Late Than Never" (arXiv:2509.17349), sec. 5: a long-form output is
aligned to the reference words of its recording by a monotonic alignment that maximises the sum
of word similarities (Jaccard similarity of character sets; exact match at char level; -inf
between punctuation and non-punctuation) with free insertions and deletions. Output words left
unaligned join the neighbouring reference word they resemble more. Each reference segment then
gets the output words aligned to it, their emission times made relative to the segment start,
and YAAL is computed with the cut at the end of the recording instead of the end of the segment.

Conventions reproduced from OmniSTEval (``data.py``, ``alignment.py``, ``resegment.py``,
``scoring.py``) with no Moses tokenisation (its ``--lang`` unset): units are compared after NFKC
and lower-casing; ties prefer match, then deletion, then insertion; at char level spaces are
removed from the references. The alignment DP runs a row at a time in numpy (the insertion
chain along a row is a running maximum), giving the same table as the reference's loops.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from metrics.latency import yet_another_average_lagging
from metrics.units import reference_length

PUNCT = frozenset(".!?,;:-()") | frozenset("。！？，；：—（）") | frozenset("。！？，；：ー（）")
_MATCH, _DELETE, _INSERT = 0, 1, 2


@dataclass
class Unit:
    """One output (or reference) unit: the compared text, its segment and its emission times."""

    text: str
    original: str | None = None
    segment: int | None = None
    emission: float | None = None
    emission_ca: float | None = None


def _similarity_matrix(ref: Sequence[str], hyp: Sequence[str], char_level: bool) -> np.ndarray:
    """S[i, j] = similarity(ref[i], hyp[j]) over the distinct texts, then gathered."""
    ref_vocab, ref_idx = np.unique(np.array(ref, dtype=object), return_inverse=True)
    hyp_vocab, hyp_idx = np.unique(np.array(hyp, dtype=object), return_inverse=True)
    if char_level:
        sim = (ref_vocab[:, None] == hyp_vocab[None, :]).astype(np.float64)
    else:
        chars = sorted(set("".join(ref_vocab)) | set("".join(hyp_vocab)))
        col = {c: k for k, c in enumerate(chars)}
        r_sets = np.zeros((len(ref_vocab), len(chars)), dtype=np.int64)
        h_sets = np.zeros((len(hyp_vocab), len(chars)), dtype=np.int64)
        for k, w in enumerate(ref_vocab):
            r_sets[k, [col[c] for c in set(w)]] = 1
        for k, w in enumerate(hyp_vocab):
            h_sets[k, [col[c] for c in set(w)]] = 1
        inter = r_sets @ h_sets.T
        union = r_sets.sum(1)[:, None] + h_sets.sum(1)[None, :] - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    r_punct = np.array([w in PUNCT for w in ref_vocab], dtype=bool)
    h_punct = np.array([w in PUNCT for w in hyp_vocab], dtype=bool)
    sim = np.where(r_punct[:, None] ^ h_punct[None, :], -np.inf, sim)
    return sim[np.ix_(ref_idx.ravel(), hyp_idx.ravel())]


def align(ref: Sequence[Unit], hyp: Sequence[Unit], char_level: bool) -> list[tuple[Unit | None, Unit | None]]:
    """Monotonic alignment maximising summed similarity with free gaps; (ref, hyp) pairs with
    None for a gap, in order."""
    n, m = len(ref), len(hyp)
    back = np.full((n + 1, m + 1), _INSERT, dtype=np.int8)
    back[:, 0] = _DELETE
    back[0, 0] = _MATCH
    if n and m:
        sim = _similarity_matrix([u.text for u in ref], [u.text for u in hyp], char_level)
        prev = np.zeros(m + 1)
        for i in range(1, n + 1):
            match = prev[:-1] + sim[i - 1]
            delete = prev[1:]
            best_md = np.where(match >= delete, match, delete)
            row = np.maximum.accumulate(np.concatenate(([0.0], best_md)))
            insert = row[:-1]
            ops = np.where((match >= delete) & (match >= insert), _MATCH,
                           np.where(delete >= insert, _DELETE, _INSERT))
            back[i, 1:] = ops
            prev = row
    pairs: list[tuple[Unit | None, Unit | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        op = back[i, j]
        if op == _MATCH:
            pairs.append((ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif op == _DELETE:
            pairs.append((ref[i - 1], None))
            i -= 1
        else:
            pairs.append((None, hyp[j - 1]))
            j -= 1
    pairs.reverse()
    return pairs


def _similarity(a: Unit, b: Unit, char_level: bool) -> float:
    if (a.text in PUNCT) ^ (b.text in PUNCT):
        return -np.inf
    if char_level:
        return float(a.text == b.text)
    sa, sb = set(a.text), set(b.text)
    inter = len(sa & sb)
    union = len(sa) + len(sb) - inter
    return inter / union if union else 0.0


def assign_segments(pairs: Sequence[tuple[Unit | None, Unit | None]], char_level: bool) -> list[Unit]:
    """Give every output unit the segment of a reference unit (OmniSTEval process_alignment):
    an unaligned output unit joins the next reference unit if it is strictly more similar to it
    than to the last one, else the last; the units up to that next reference unit follow it."""
    out: list[Unit] = []
    last_ref: Unit | None = None
    next_i = 0
    lookahead: Unit | None = None
    for i, (ref, hyp) in enumerate(pairs):
        if ref is None and i >= next_i:
            if hyp is not None:
                next_i = i
                while next_i < len(pairs) and pairs[next_i][0] is None:
                    next_i += 1
                next_ref = pairs[next_i][0] if next_i < len(pairs) else None
                if next_ref is None and last_ref is None:
                    continue  # no reference unit at all: the unit belongs to no segment
                next_score = _similarity(hyp, next_ref, char_level) if next_ref is not None else -np.inf
                prev_score = _similarity(hyp, last_ref, char_level) if last_ref is not None else -np.inf
                if next_score > prev_score:
                    ref = lookahead = next_ref
                else:
                    ref, next_i, lookahead = last_ref, i, None
        elif ref is None and hyp is not None:
            ref = lookahead
        if ref is not None and i >= next_i:
            last_ref = ref
        if hyp is not None and ref is not None:
            hyp.segment = ref.segment
            out.append(hyp)
    return out


def fix_elapsed(delays: Sequence[float], elapsed: Sequence[float]) -> list[float]:
    """OmniSTEval's ``--fix_simuleval_emission_ca``: e'_1 = e_1,
    e'_i = max(e_i - e_{i-1} + d_{i-1}, e'_{i-1}) (per-unit compute instead of cumulative)."""
    out: list[float] = []
    for i, e in enumerate(elapsed):
        if i == 0:
            out.append(e)
        else:
            out.append(max(e - elapsed[i - 1] + delays[i - 1], out[-1]))
    return out


@dataclass(frozen=True)
class ResegmentedSentence:
    """One reference segment after resegmentation; times relative to the segment start (ms)."""

    prediction: str
    reference: str
    source_length: float
    delays: tuple[float, ...]
    elapsed: tuple[float, ...]
    time_to_recording_end: float


def resegment_recording(
    prediction_units: Sequence[str],
    delays: Sequence[float],
    elapsed: Sequence[float],
    segments: Sequence[tuple[float, float, str]],
    char_level: bool,
) -> list[ResegmentedSentence]:
    """Resegment one recording's output onto its reference segments.

    ``segments`` are (offset_ms, duration_ms, reference) in order; ``delays``/``elapsed`` are
    absolute in the recording (ms), one per prediction unit.
    """
    references = [r.replace(" ", "") if char_level else r for _, _, r in segments]
    ref_units: list[Unit] = []
    for k, r in enumerate(references):
        r = r.strip().lower()
        for w in (list(r) if char_level else r.split()):
            ref_units.append(Unit(unicodedata.normalize("NFKC", w).lower(), segment=k))
    hyp_units = [
        Unit(unicodedata.normalize("NFKC", w).lower(), original=w, emission=d, emission_ca=e)
        for w, d, e in zip(prediction_units, delays, elapsed)
    ]
    assigned = assign_segments(align(ref_units, hyp_units, char_level), char_level)
    per_segment: list[list[Unit]] = [[] for _ in segments]
    for u in assigned:
        per_segment[u.segment].append(u)
    recording_end = 0
    for offset, duration, _ in segments:
        recording_end = max(recording_end, offset + duration)
    out = []
    for (offset, duration, _), reference, units in zip(segments, references, per_segment):
        joiner = "" if char_level else " "
        out.append(ResegmentedSentence(
            prediction=joiner.join(u.original for u in units),
            reference=reference,
            source_length=duration,
            delays=tuple(u.emission - offset for u in units),
            elapsed=tuple(u.emission_ca - offset for u in units),
            time_to_recording_end=recording_end - offset,
        ))
    return out


def long_yaal(sentences: Sequence[ResegmentedSentence], unit: str, computation_aware: bool) -> list[float | None]:
    """Per-segment LongYAAL (None where OmniSTEval skips the segment)."""
    scores = []
    for s in sentences:
        times = s.elapsed if computation_aware else s.delays
        scores.append(yet_another_average_lagging(
            times, s.source_length, reference_length(s.reference, unit), cutoff=s.time_to_recording_end
        ))
    return scores
