"""StreamLAAL, as FBK's ``stream_laal.py`` (v2.0, hlt-mt/FBK-fairseq) computes it.

Papi et al. 2024, "StreamAtt: Direct Streaming Speech-to-Text Translation with Attention-based
Audio History Selection" (ACL), sec. 4.1: a recording's whole output is split into one piece per
reference sentence by minimum-WER alignment (Matusov et al. 2005, mWERSegmenter; here the
``mweralign`` package), then LAAL is computed per sentence with each emission time made relative
to the sentence start, d' = max(0, d - start), and averaged over the sentences that got output.

The units of a piece are taken from the recording's delays in order, as many as the piece holds
(SimulEval's length rule: ``len(piece.split(" "))`` for words, ``len(piece.strip())`` for chars).
Computation-aware: SimulEval's ``elapsed`` accumulates the compute of the whole recording, so each
unit's time is first de-accumulated: e'_1 = e_1; e'_i = e'_{i-1} - d'_{i-1} + d_i when
e_i = e_{i-1} (same step); otherwise e'_i = e_i - e_{i-1} + d_{i-1}; then max(0, e'_i - start).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from metrics.latency import length_adaptive_average_lagging
from metrics.units import reference_length


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """mweralign's C++ core prints to file descriptor 2; keep that off the user's terminal.

    fd 2 points at /dev/null while the alignment runs: other threads' stderr output in that
    window is lost (scoring is an offline job; do not run it inside a live server process)."""
    fd = 2  # the C++ side writes to the process's fd 2 whatever sys.stderr is
    try:
        saved = os.dup(fd)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(null.fileno(), fd)
            try:
                yield
            finally:
                os.dup2(saved, fd)
    finally:
        os.close(saved)


def _align_texts():
    # mweralign calls logging.basicConfig() on import; a handler on the root logger while it
    # imports makes that a no-op, so importing it leaves the caller's logging alone.
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        from mweralign import align_texts
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("StreamLAAL needs the mweralign package (pip install mweralign)") from e
    finally:
        root.removeHandler(guard)
    return align_texts


def mwer_split(prediction: str, references: Sequence[str]) -> list[str]:
    """Split ``prediction`` into len(references) pieces by minimum-WER alignment (mweralign,
    untokenised text); each piece stripped, "" where a reference got nothing."""
    align_texts = _align_texts()
    with _quiet_stderr():
        aligned = align_texts("\n".join(references), prediction.replace("\n", " "))
    pieces = [p.strip() for p in aligned.split("\n")]
    if len(pieces) != len(references):
        raise RuntimeError(f"mweralign returned {len(pieces)} pieces for {len(references)} references")
    return pieces


def piece_length(piece: str, unit: str) -> int:
    """How many delays a piece takes: SimulEval's length of the stripped piece."""
    return reference_length(piece.strip(), unit)


class StreamTimes:
    """Hands out one recording's delays and de-accumulated elapsed times piece by piece."""

    def __init__(self, delays: Sequence[float], elapsed: Sequence[float]):
        self._delays = delays
        self._elapsed = elapsed
        self._used = 0
        self._prev: tuple[float, float, float, float] | None = None  # d, e, d', e'

    def take(self, count: int, start_ms: float) -> tuple[list[float], list[float]]:
        """The next ``count`` units' (delays, elapsed) relative to ``start_ms``, floored at 0."""
        delays = self._delays[self._used:self._used + count]
        elapsed = self._elapsed[self._used:self._used + count]
        out_d, out_e = [], []
        for d, e in zip(delays, elapsed):
            if self._prev is None:
                stream_e = e
            elif e == self._prev[1]:
                stream_e = self._prev[3] - self._prev[2] + d
            else:
                stream_e = e - self._prev[1] + self._prev[0]
            rel_d = max(0.0, d - start_ms)
            rel_e = max(0.0, stream_e - start_ms)
            out_d.append(rel_d)
            out_e.append(rel_e)
            self._prev = (d, e, rel_d, rel_e)
        self._used += count
        return out_d, out_e


@dataclass(frozen=True)
class StreamSentence:
    """One reference sentence after mWER resegmentation; times relative to its start (ms)."""

    prediction: str
    reference: str
    source_length: float
    delays: tuple[float, ...]
    elapsed: tuple[float, ...]


def resegment_recording(
    prediction: str,
    delays: Sequence[float],
    elapsed: Sequence[float],
    segments: Sequence[tuple[float, float, str]],
    unit: str,
) -> list[StreamSentence]:
    """Resegment one recording; ``segments`` are (offset_ms, duration_ms, reference) in order."""
    pieces = mwer_split(prediction, [r for _, _, r in segments])
    times = StreamTimes(delays, elapsed)
    out = []
    for (offset, duration, reference), piece in zip(segments, pieces):
        if piece:
            d, e = times.take(piece_length(piece, unit), offset)
        else:
            d, e = [], []
        out.append(StreamSentence(piece, reference.strip(), duration, tuple(d), tuple(e)))
    return out


def stream_laal(sentences: Sequence[StreamSentence], unit: str, computation_aware: bool) -> list[float | None]:
    """Per-sentence LAAL on the resegmented times (None for a sentence with no output)."""
    return [
        length_adaptive_average_lagging(
            s.elapsed if computation_aware else s.delays, s.source_length, reference_length(s.reference, unit)
        )
        for s in sentences
    ]
