"""Guards of the streaming task: seam de-duplication after a trim (whisper_streaming's
HypothesisBuffer.insert) and the cut of sentence-level repetition loops."""

from policies.base import HypToken
from streamrt.tasks.whisper_stream_state import _Word


def _toks(text):
    return [HypToken(i, " " + w, 100.0 * i, 100.0 * i + 100) for i, w in enumerate(text.split())]


def test_seam_drops_leading_words_repeating_the_committed_tail(make_streaming):
    s = make_streaming().create_stream()
    s._committed_texts = ["we", "went", "home."]
    # just after a trim the window holds no committed word; the model re-hears "went home"
    assert s._seam_duplicates(_toks("went home and slept")) == 2
    assert s._seam_duplicates(_toks("Home and slept")) == 1  # case and punctuation ignored
    assert s._seam_duplicates(_toks("and slept")) == 0


def test_seam_check_only_right_after_a_trim(make_streaming):
    s = make_streaming().create_stream()
    s._committed_texts = ["we", "went"]
    s._window_words = [_Word("went", [5], 0.0, 100.0)]
    assert s._seam_duplicates(_toks("went on")) == 0


def test_seam_compares_at_most_seam_max_words(make_streaming):
    s = make_streaming(seam_max_words=2).create_stream()
    s._committed_texts = ["a", "b", "c"]
    assert s._seam_duplicates(_toks("a b c d")) == 0
    assert s._seam_duplicates(_toks("b c d")) == 2


def test_back_to_back_repeated_run_of_words_is_cut(make_streaming):
    s = make_streaming(repeated_span_words=3).create_stream()
    texts = [" the", " cat", " sat", ".", " the", " cat", " sat", "."]
    assert s._repeated_span(texts) == 4
    assert s._repeated_span([" the", " cat", " sat", " on", " the", " mat"]) is None
    # a run repeating the committed words just before it is cut at its start
    s._window_words = [_Word(w, [1], 0.0, 1.0) for w in ("one", "two", "three")]
    assert s._repeated_span([" one", " two", " three", " four"]) == 0


def test_repeats_that_are_not_back_to_back_are_speech(make_streaming):
    s = make_streaming(repeated_span_words=5).create_stream()
    text = "it was the age of wisdom, it was the age of foolishness, it was the epoch of belief"
    assert s._repeated_span([" " + w for w in text.split()]) is None
