"""Latency and quality metrics, SimulEval-compatible log I/O. Pure Python + numpy: no torch."""
