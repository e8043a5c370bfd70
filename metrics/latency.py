"""Sentence-level latency metrics, computed exactly as the reference tools compute them.

Each function takes one sentence's emission times ``delays`` (d_1..d_|Y*|, non-decreasing, in the
source unit: ms for speech), the source length |X| and, where used, the reference length |Y|.
Pass ``elapsed`` instead of ``delays`` for the computation-aware (``_CA``) variant. Every formula
and its edge cases follow SimulEval 1.1.4 ``evaluator/scorers/latency_scorer.py`` (AL, LAAL, AP,
DAL, ATD) and OmniSTEval 0.1.10 ``scoring.py`` (YAAL); papers are cited per function.

Functions return None where the reference tool skips the sentence (and where SimulEval would
divide by zero: a zero-length reference for AL/AP), so corpus means skip it too.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

ATD_SOURCE_TOKEN_MS = 300  # SimulEval's ATD splits speech input into 300 ms pseudo-tokens
ATD_TARGET_TOKEN_LEN = 0  # and gives text output tokens no duration


def average_lagging(delays: Sequence[float], source_length: float, target_length: int) -> float | None:
    """AL (Ma et al. 2019, STACL, eq. 4): mean of d_i - (i-1)|X|/|Y| over i <= tau, the first
    unit emitted at/after the source end. A first unit after the source end scores d_1."""
    if not delays or target_length == 0:
        return None
    if delays[0] > source_length:
        return delays[0]
    return _lagging(delays, source_length, target_length / source_length)


def length_adaptive_average_lagging(
    delays: Sequence[float], source_length: float, target_length: int
) -> float | None:
    """LAAL (Papi et al. 2022, "Over-Generation Cannot Be Rewarded", eq. 2): AL with the rate
    |X| / max(|Y|, |Y*|), so over-generation cannot lower the score."""
    if not delays:
        return None
    if delays[0] > source_length:
        return delays[0]
    return _lagging(delays, source_length, max(len(delays), target_length) / source_length)


def _lagging(delays: Sequence[float], source_length: float, gamma: float) -> float:
    # Same operation order as SimulEval so the floats agree bit for bit.
    total = 0.0
    tau = 0
    for t_minus_1, d in enumerate(delays):
        total += d - t_minus_1 / gamma
        tau = t_minus_1 + 1
        if d >= source_length:
            break
    return total / tau


def differentiable_average_lagging(delays: Sequence[float], source_length: float) -> float | None:
    """DAL (Arivazhagan et al. 2019, MILk, sec. 4.1): d'_1 = d_1, d'_i = max(d_i, d'_{i-1} +
    |X|/|Y*|); mean of d'_i - (i-1)|X|/|Y*| over all |Y*| units (no cut at the source end)."""
    if not delays:
        return None
    n = len(delays)
    gamma = n / source_length
    total = 0.0
    g_prev = 0.0
    for i_minus_1, g in enumerate(delays):
        g_prime = g if i_minus_1 == 0 else max(g, g_prev + 1 / gamma)
        total += g_prime - i_minus_1 / gamma
        g_prev = g_prime
    return total / n


def average_proportion(delays: Sequence[float], source_length: float, target_length: int) -> float | None:
    """AP (Cho and Esipova 2016, sec. 3.1): sum(d_i) / (|X| |Y|)."""
    if not delays or target_length == 0:
        return None
    return sum(delays) / (source_length * target_length)


def yet_another_average_lagging(
    delays: Sequence[float], source_length: float, target_length: int, cutoff: float | None = None
) -> float | None:
    """YAAL (Polák et al. 2025, "Better Late Than Never", sec. 4, arXiv:2509.17349): LAAL's rate
    |X| / max(|Y|, |Y*|), but every unit emitted at/after ``cutoff`` is excluded and a sentence
    whose first unit comes at/after it is dropped (None). Short-form: cutoff = |X| (the default);
    long-form (LongYAAL): cutoff = time from the segment start to the end of the recording."""
    cutoff = source_length if cutoff is None else cutoff
    if not delays or delays[0] >= cutoff:
        return None
    gamma = max(len(delays), target_length) / source_length
    total = 0.0
    tau = 0
    for t_minus_1, d in enumerate(delays):
        if d >= cutoff:
            break
        total += d - t_minus_1 / gamma
        tau = t_minus_1 + 1
    return total / tau


def computation_times(delays: Sequence[float], elapsed: Sequence[float]) -> list[float]:
    """Per-unit compute time as SimulEval's ATD derives it from cumulative ``elapsed``:
    c_i = (e_i - d_i) - (e_{i-1} - d_{i-1}); all zeros when elapsed is all zeros."""
    if all(e == 0 for e in elapsed):
        return list(elapsed)
    spent = [e - d for e, d in zip(elapsed, delays)]
    return [s - p for s, p in zip(spent, [0] + spent[:-1])]


def average_token_delay(delays: Sequence[float], elapsed: Sequence[float] | None = None) -> float | None:
    """ATD (Kano et al. 2023, "Average Token Delay", sec. 3) for speech input and text output,
    as SimulEval scores logs: the source is cut into 300 ms pseudo-tokens per read chunk, target
    tokens have no duration, and each target token t is paired with source token
    a(t) = min(t - max(0, |Y_<chunk| - |X_<chunk|), |X_<=chunk|). With ``elapsed`` (the _CA
    variant) each target token also carries its compute time."""
    if not delays:
        return None
    n = len(delays)
    compute = computation_times(delays, elapsed) if elapsed is not None else [0] * n

    # Target side: one chunk per run of equal delays; token end time = max(d, previous end) + compute.
    tgt_chunk_of = [0]
    tgt_sizes = [0]
    prev = None
    for d in delays:
        if d != prev:
            tgt_sizes.append(1)
        else:
            tgt_sizes[-1] += 1
        prev = d
    for chunk, size in enumerate(tgt_sizes[1:], 1):
        tgt_chunk_of += [chunk] * size
    tgt_time = [0]
    for d, c in zip(delays, compute):
        start = max(d, tgt_time[-1])
        tgt_time.append(start + ATD_TARGET_TOKEN_LEN + c)

    # Source side: one chunk per distinct delay, cut into 300 ms tokens (plus a remainder).
    distinct = list(dict.fromkeys(delays))
    src_sizes = [0]
    src_time = [0]
    for d, p in zip(distinct, [0] + distinct[:-1]):
        count, rest = divmod(d - p, ATD_SOURCE_TOKEN_MS)
        lengths = int(count) * [ATD_SOURCE_TOKEN_MS] + ([rest] if rest != 0 else [])
        src_sizes.append(len(lengths))
        for length in lengths:
            src_time.append(src_time[-1] + length)

    src_before = _prefix_sums(src_sizes)  # src_before[k] = sum(src_sizes[:k])
    tgt_before = _prefix_sums(tgt_sizes)
    lags = []
    for t in range(1, len(tgt_chunk_of)):
        chunk = tgt_chunk_of[t]
        acc_x = src_before[min(chunk, len(src_sizes))]
        acc_y = tgt_before[min(chunk, len(tgt_sizes))]
        s = t - max(0, acc_y - acc_x)
        current = src_before[min(chunk + 1, len(src_sizes))]
        lags.append(tgt_time[t] - src_time[min(s, current)])
    return float(statistics.mean(lags))


def _prefix_sums(sizes: list[int]) -> list[int]:
    out = [0]
    for s in sizes:
        out.append(out[-1] + s)
    return out
