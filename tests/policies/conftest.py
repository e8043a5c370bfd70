"""Synthetic PolicyViews for policy unit tests (no model, no weights): the ``make_view`` fixture."""

import numpy as np
import pytest

from policies.base import HypToken, PolicyView


def view(words, committed=(), *, n_frames=100, peaks=None, finished=False, source_ms=2000.0):
    """Hypothesis tokens from words ("hel-lo" = two tokens); peaks: attention peak frame per token."""
    toks = []
    for w in words:
        pieces = w.split("-")
        for j, p in enumerate(pieces):
            toks.append(" " + p if j == 0 else p)
    hyp = []
    for i, text in enumerate(toks):
        att = None
        if peaks is not None:
            att = np.full(n_frames, 0.1 / n_frames)
            att[peaks[i]] += 0.9
        hyp.append(HypToken(i, text, 20.0 * i, 20.0 * i + 20, att))
    return PolicyView(source_ms, finished, 0.0, 20.0, n_frames, tuple(committed), tuple(hyp))


@pytest.fixture
def make_view():
    return view
