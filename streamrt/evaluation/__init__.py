"""Offline latency-quality evaluation: stream a data set through sessions in simulated real time and
score the SimulEval-format log (``streamrt eval run``)."""

from streamrt.evaluation.data import DataRow, read_data
from streamrt.evaluation.runner import EvalResult, evaluate_offline, evaluate_streaming

__all__ = ["DataRow", "EvalResult", "evaluate_offline", "evaluate_streaming", "read_data"]
