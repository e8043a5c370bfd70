import pytest

from policies.base import Read, Write
from policies.wait_k import WaitK
from streamrt.errors import PolicyOptionError
from policy_views import token, view

HYP = [token(" the"), token(" cat"), token(" sat"), token(" on"), token(" the"), token(" m"), token("at")]


@pytest.mark.parametrize("source_ms,expected_words", [
    (0, 0), (279, 0), (560, 0),      # fewer than k=3 segments of 280 ms
    (840, 1),                        # 3 segments -> 3 - 3 + 1 = 1 word
    (1120, 2), (1400, 3),
])
def test_wait_k_budget_follows_fixed_pre_decision(source_ms, expected_words):
    # Ma et al. 2020: with n segments read, at most n - k + 1 words are written in total
    assert WaitK().allowed_words(source_ms) == expected_words


def test_wait_k_writes_only_complete_words_within_budget():
    p = WaitK(k=1, segment_ms=100)
    assert p.decide(view(HYP, source_ms=250)) == Write(2)  # 2 words allowed
    # budget 10 words, but the last word (" m" + "at") may still grow: 5 complete words, 5 tokens
    assert p.decide(view(HYP, source_ms=1000)) == Write(5)


def test_wait_k_counts_words_already_committed():
    p = WaitK(k=1, segment_ms=100)
    assert p.decide(view(HYP, source_ms=250, committed=["a", "b"])) == Read()
    assert p.decide(view(HYP, source_ms=350, committed=["a", "b"])) == Write(1)


def test_wait_k_flushes_at_end_of_source():
    assert WaitK().decide(view(HYP, source_ms=100, finished=True)) == Write(len(HYP), final=True)


@pytest.mark.parametrize("opts", [{"k": 0}, {"segment_ms": 0}, {"segment_ms": -5}])
def test_wait_k_rejects_bad_settings(opts):
    with pytest.raises(PolicyOptionError):
        WaitK(**opts)
