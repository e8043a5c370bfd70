"""Token choice (greedy, temperature, top-p with an injected generator) and stop-string holdback."""

from __future__ import annotations

import pytest
import torch

from streamrt.decoding.llm_sampling import (RepeatBan, ReplyRepeats, SamplingSettings, WithinWord, choose_token,
                                            split_stop)
from streamrt.errors import ConfigError


def test_greedy_top_p_and_seeded_sampling():
    logits = torch.tensor([0.0, 3.0, 2.9, -5.0])
    assert choose_token(logits, SamplingSettings(), None) == 1
    nucleus = SamplingSettings(temperature=1.0, top_p=0.6)  # token 1 is 51 %, 1 and 2 are 98 %: both stay
    picks = {choose_token(logits, nucleus, torch.Generator().manual_seed(s)) for s in range(40)}
    assert picks == {1, 2}
    only_best = SamplingSettings(temperature=1.0, top_p=0.5)
    assert {choose_token(logits, only_best, torch.Generator().manual_seed(s)) for s in range(10)} == {1}
    hot = SamplingSettings(temperature=1.0)
    first = [choose_token(logits, hot, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert first[0] == first[1]


def test_stop_strings_cut_and_hold_back_a_possible_start():
    assert split_stop("Hello\nUser: hi", ("\nUser:",)) == ("Hello", True, 0)
    assert split_stop("Hello\nUs", ("\nUser:",)) == ("Hello", False, 3)
    assert split_stop("caf\ufffd", ()) == ("caf", False, 1)  # half a UTF-8 character waits
    assert split_stop("plain", ("\nUser:",)) == ("plain", False, 0)


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="top_p"):
        SamplingSettings(top_p=0)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        SamplingSettings(max_new_tokens=0)
    with pytest.raises(ConfigError, match="stop_strings"):
        SamplingSettings(stop_strings="x")


def test_lookup_draft_follows_the_latest_earlier_match():
    from streamrt.decoding.llm_sampling import lookup_draft

    tokens = [5, 6, 7, 1, 2, 5, 6, 7, 3, 4, 9, 5, 6, 7]
    assert lookup_draft(tokens, 3) == [3, 4, 9]  # the later of the two earlier "5 6 7"
    assert lookup_draft(tokens, 1) == [3]
    assert lookup_draft([1, 2, 3, 4], 3) == []  # no earlier match
    assert lookup_draft(tokens, 0) == []


def test_a_repeat_ban_forbids_the_token_that_would_complete_an_earlier_run():
    ban = RepeatBan.of([[1, 2, 3, 4], [7, 2, 3, 9]], 3)
    assert ban.banned([5, 2, 3]) == {4, 9}  # "2 3" was followed by 4 and by 9
    assert ban.banned([2, 3, 4]) == set() and ban.banned([2]) == set()  # no run, or too short to tell
    assert RepeatBan.of([[1, 2]], 3).follows == {} and RepeatBan.of([[1, 2, 3, 4], [7, 2, 3, 9]], 3, exempt={4}).banned([2, 3]) == {9}
    with pytest.raises(ConfigError, match="n >= 2 tokens, got 1"):
        RepeatBan.of([], 1)


def _write(ban: RepeatBan, tokens: list[int]) -> list[frozenset[int]]:
    """What ``ReplyRepeats`` bans before each of ``tokens``, written one by one (as the decoder does)."""
    repeats, reply, bans = ReplyRepeats(ban), [], []
    for t in tokens:
        bans.append(repeats.banned(reply) if reply else frozenset())
        reply.append(t)
        repeats.wrote(reply)
    return bans + [repeats.banned(reply)]


def test_a_reply_may_not_repeat_a_run_of_itself_nor_of_an_earlier_reply():
    """within_reply: once "1 2 3" was written, "1 2" may not be followed by 3 again (as transformers'
    no_repeat_ngram_size=3); the earlier replies' runs are banned as well, both exempt tokens never."""
    own = RepeatBan.of([], 3, within_reply=True)
    assert _write(own, [1, 2, 3, 1, 2]) == [set(), set(), set(), set(), set(), {3}]
    assert _write(own, [5, 5, 5]) == [set(), set(), set(), {5}]  # "5 5" was followed by 5
    both = RepeatBan.of([[1, 2, 9]], 3, within_reply=True)
    assert _write(both, [1, 2, 3, 1, 2]) == [set(), set(), {9}, set(), set(), {3, 9}]
    exempt = RepeatBan.of([[1, 2, 9]], 3, exempt={3, 9}, within_reply=True)
    assert _write(exempt, [1, 2, 3, 1, 2]) == [set()] * 6
    assert _write(RepeatBan.of([[1, 2, 9]], 3), [1, 2, 3, 1, 2])[-1] == {9}  # earlier replies only


def test_a_reply_stuck_on_one_token_may_not_write_it_again_after_max_token_run():
    """max_token_run=3: after "2 2 2" the next token may not be 2 (even when exempt from the run
    ban, as digits are); a different token resets the count; n None bans no run, only the cap."""
    cap = RepeatBan.of([], None, max_token_run=3)
    assert _write(cap, [7, 2, 2, 2]) == [set(), set(), set(), set(), {2}]
    assert _write(cap, [2, 2, 7, 2, 2]) == [set()] * 6
    digits = RepeatBan.of([], 4, exempt={2}, within_reply=True, max_token_run=3)
    assert _write(digits, [1, 2, 2, 2])[-1] == {2} and _write(digits, [2, 2, 2, 2, 2])[-2:] == [{2}, {2}]
    with pytest.raises(ConfigError, match="max_token_run must be an int >= 1 tokens or None, got 0"):
        RepeatBan.of([], 4, max_token_run=0)


def test_within_word_holds_the_tokens_without_a_space_before_them():
    vocab = {1: " You", 2: "'re", 3: " welcome", 4: "2", 5: "lo", 6: "."}
    within = WithinWord(lambda ids: "".join(vocab[i] for i in ids))
    assert {t for t in vocab if t in within} == {4, 5} and "x" not in within

