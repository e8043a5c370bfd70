"""LocalAgreement-n (Polák et al. 2022; whisper_streaming's HypothesisBuffer.flush)."""

import pytest

from policies import registry
from policies.base import Read, Write
from policies.local_agreement import LocalAgreement
from streamrt.errors import PolicyOptionError


def test_registered_under_its_name_with_default_n2(make_view):
    p = registry.create("local-agreement")
    assert isinstance(p, LocalAgreement) and p.n == 2


def test_first_hypothesis_is_never_committed(make_view):
    p = LocalAgreement()
    assert p.decide(make_view(["the", "cat"])) == Read()


def test_commits_longest_common_prefix_of_last_two(make_view):
    p = LocalAgreement()
    p.decide(make_view(["the", "cat", "sat"]))
    # agree on "the cat" (2 words = 2 tokens)
    assert p.decide(make_view(["the", "cat", "is"])) == Write(2)


def test_counts_tokens_of_multi_token_words(make_view):
    p = LocalAgreement()
    p.decide(make_view(["hel-lo", "world"]))
    assert p.decide(make_view(["hel-lo", "world", "again"])) == Write(3)


def test_word_pieces_must_agree_whole(make_view):
    p = LocalAgreement()
    p.decide(make_view(["play"]))
    assert p.decide(make_view(["play-ground"])) == Read()


def test_history_is_rebased_after_a_commit(make_view):
    p = LocalAgreement()
    p.decide(make_view(["a", "b", "c"]))
    assert p.decide(make_view(["a", "b", "d"])) == Write(2)
    # the task committed "a b"; the next hypothesis continues after them
    assert p.decide(make_view(["d", "e"], committed=("a", "b"))) == Write(1)


def test_n3_needs_three_agreeing_hypotheses(make_view):
    p = LocalAgreement(n=3)
    p.decide(make_view(["x", "y"]))
    assert p.decide(make_view(["x", "y"])) == Read()
    assert p.decide(make_view(["x", "z"])) == Write(1)


def test_end_of_source_writes_everything_final(make_view):
    p = LocalAgreement()
    assert p.decide(make_view(["only", "once"], finished=True)) == Write(2, final=True)


def test_bad_n_is_a_policy_option_error(make_view):
    with pytest.raises(PolicyOptionError, match="'n' must be >= 1"):
        LocalAgreement(n=0)
    with pytest.raises(PolicyOptionError):
        registry.create("local-agreement", {"k": 3})


def test_reset_forgets_the_previous_stream(make_view):
    p = LocalAgreement()
    p.decide(make_view(["a", "b"]))
    p.reset()
    assert p.decide(make_view(["a", "b"])) == Read()


@pytest.mark.parametrize("n", [1, 2, 3])
def test_declares_that_a_word_needs_n_decodes_to_commit(make_view, n):
    """``decodes_to_commit`` (the task sizes its stall limit by it) says what ``decide`` does: a
    word seen in n - 1 decodes is not written, in n it is."""
    p = LocalAgreement(n=n)
    assert p.decodes_to_commit() == n
    actions = [p.decide(make_view(["the", "cat", "sat"])) for _ in range(n)]
    assert all(a == Read() for a in actions[:-1]) and isinstance(actions[-1], Write)
