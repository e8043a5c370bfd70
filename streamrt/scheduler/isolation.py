"""Failure isolation for a batched model step: one bad stream must not fail the whole batch.

``step_isolating(model, streams)`` runs ``model.step(streams)``; if it raises, the batch is split
and retried until the failing stream is alone (or at once, when the exception names the failing
stream as ``exc.stream``). The other streams are stepped exactly once, so a model must validate
before it mutates (``WhisperStreamingModel.validate_step`` does).
"""

from __future__ import annotations

from typing import Sequence

from streamrt.engine import ModelStream, StreamingModel


def step_isolating(model: StreamingModel, streams: Sequence[ModelStream]) -> dict[int, Exception]:
    """Step ``streams`` in as few batches as failures allow; returns {index: exception} of the
    streams that failed (empty when the batch stepped as one)."""
    failures: dict[int, Exception] = {}
    _try_step(model, list(range(len(streams))), streams, failures)
    return failures


def _try_step(model: StreamingModel, idx: list[int], streams: Sequence[ModelStream],
              failures: dict[int, Exception]) -> None:
    try:
        model.step([streams[i] for i in idx])
        return
    except Exception as e:
        culprit = getattr(e, "stream", None)
        named = [i for i in idx if streams[i] is culprit]
        if named:
            failures[named[0]] = e
            rest = [i for i in idx if i != named[0]]
        elif len(idx) == 1:
            failures[idx[0]] = e
            return
        else:
            half = len(idx) // 2
            _try_step(model, idx[:half], streams, failures)
            rest = idx[half:]
        if rest:
            _try_step(model, rest, streams, failures)
