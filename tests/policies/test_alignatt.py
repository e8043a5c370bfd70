"""AlignAtt (Papi et al., Interspeech 2023): stop before the first token attending to the last f frames."""

from dataclasses import replace

import pytest

from policies import registry
from policies.alignatt import AlignAtt
from policies.base import Read, Write
from streamrt.errors import PolicyOptionError


def test_registered_with_default_frames(make_view):
    p = registry.create("alignatt")
    assert isinstance(p, AlignAtt) and p.frames == 4


def test_writes_tokens_before_the_first_attending_to_the_border(make_view):
    p = AlignAtt(frames=10)  # border = frame 90 of 100
    assert p.decide(make_view(["a", "b", "c"], peaks=[10, 50, 95])) == Write(2)


def test_reads_when_the_first_token_attends_to_the_border(make_view):
    p = AlignAtt(frames=10)
    assert p.decide(make_view(["a", "b"], peaks=[92, 20])) == Read()


def test_stops_at_first_border_token_even_if_later_ones_look_back(make_view):
    p = AlignAtt(frames=10)
    assert p.decide(make_view(["a", "b", "c"], peaks=[5, 91, 30])) == Write(1)


def test_larger_f_waits_longer(make_view):
    v = make_view(["a", "b", "c"], peaks=[10, 70, 85])
    assert AlignAtt(frames=10).decide(v) == Write(3)
    assert AlignAtt(frames=20).decide(v) == Write(2)
    assert AlignAtt(frames=40).decide(v) == Write(1)


def test_end_of_source_writes_all(make_view):
    assert AlignAtt().decide(make_view(["a", "b"], peaks=[99, 99], finished=True)) == Write(2, final=True)


def test_option_checks(make_view):
    with pytest.raises(PolicyOptionError, match="'frames' must be >= 1"):
        AlignAtt(frames=0)
    assert AlignAtt(frames="12").frames == 12


def test_max_backjump_stops_before_a_token_that_rereads_heard_audio(make_view):
    # "fail better . fail better": the second "fail" peaks 21 frames before the furthest peak
    v = make_view(["fail", "better", ".", "fail", "better"], peaks=[60, 70, 70, 49, 70])
    assert AlignAtt(frames=10).decide(v) == Write(5)  # off by default: the repeat is written
    assert AlignAtt(frames=10, max_backjump=20).decide(v) == Write(3)
    assert AlignAtt(frames=10, max_backjump=21).decide(v) == Write(5)  # exactly the limit is allowed


def test_max_backjump_counts_from_the_last_committed_word(make_view):
    # the last committed word starts at 1200 ms = frame 60; a first token peaking at frame 30 is a repeat
    v = replace(make_view(["again"], ["fail", "better"], peaks=[30]), committed_start_ms=(1000.0, 1200.0))
    assert AlignAtt(frames=10, max_backjump=10).decide(v) == Read()
    assert AlignAtt(frames=10, max_backjump=10).decide(replace(v, committed_start_ms=(300.0, 700.0))) == Write(1)


def test_at_end_of_source_everything_is_written_but_a_repeat(make_view):
    # the last word may attend past the window (Whisper's silence padding): still written
    v = replace(make_view(["fail", "better", "fail"], peaks=[60, 99, 20], finished=True), n_frames=90)
    assert AlignAtt(frames=10).decide(v) == Write(3, final=True)
    assert AlignAtt(frames=10, max_backjump=5).decide(v) == Write(2, final=True)


def test_max_backjump_must_not_be_negative():
    with pytest.raises(PolicyOptionError, match="'max_backjump' must be >= 0 frames"):
        AlignAtt(max_backjump=-1)


@pytest.mark.parametrize("name", ["alignatt", "edatt", "streamatt", "wait-k"])
def test_policies_that_decide_on_one_hypothesis_commit_from_one_decode(name):
    assert registry.create(name).decodes_to_commit() == 1
