"""Latency and quality metrics, SimulEval-compatible log I/O. Pure Python + numpy: no torch.

    from metrics import read_instances, score
    scores = score(read_instances("instances.log"), unit="word", computation_aware=True)

Short-form (one instance per sentence): :func:`score` gives AL, LAAL, DAL, AP, ATD, YAAL (+ _CA)
and BLEU/WER. Long-form (one instance per recording, plus a segment file and references):
:func:`metrics.longform.score_long_form` gives LongYAAL and StreamLAAL (+ _CA).
See docs/metrics.md for the definitions and which reference tool each one matches.
"""

from metrics.io import Instance, read_instances, write_instances
from metrics.scoring import LATENCY_METRICS, latency_scores, score

__all__ = ["Instance", "LATENCY_METRICS", "latency_scores", "read_instances", "score", "write_instances"]
