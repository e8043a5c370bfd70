"""Which model's batch to step next, when several models have ready streams (pure: numbers in).

Each model offers one candidate: its batch (chosen by ``batching.choose_batch_size``), the earliest
deadline in it, the highest priority in it, and the batch's predicted step time. The rule:

1. A candidate *at risk* goes first, earliest deadline first: one whose deadline would be missed
   if another model's step ran before it (slack after its own step below the longest step of the
   others). An ASR stream near its deadline therefore beats an LLM decode, whatever the priorities.
2. Otherwise every candidate can wait one step: the highest priority goes first (an interactive LLM
   turn waiting on its first token beats an ASR stream with slack), then the earliest deadline.

With one model this is plain earliest-deadline-first, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Candidate:
    """deadline: clock seconds; priority: higher first among candidates with slack; step_s: the
    predicted seconds of its step."""

    deadline: float
    priority: int
    step_s: float


def choose_candidate(candidates: Sequence[Candidate], now: float) -> int:
    """The index of the candidate to step now (``candidates`` non-empty)."""
    if len(candidates) == 1:
        return 0
    at_risk = []
    for i, c in enumerate(candidates):
        others = max(o.step_s for j, o in enumerate(candidates) if j != i)
        if c.deadline - now - c.step_s < others:
            at_risk.append(i)
    if at_risk:
        return min(at_risk, key=lambda i: (candidates[i].deadline, -candidates[i].priority, i))
    return min(range(len(candidates)), key=lambda i: (-candidates[i].priority, candidates[i].deadline, i))
