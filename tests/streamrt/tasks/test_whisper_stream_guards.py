"""Guards of the streaming task: seam de-duplication after a trim (whisper_streaming's
HypothesisBuffer.insert) and the cut of sentence-level repetition loops."""

import numpy as np

from policies.base import HypToken
from streamrt.tasks.whisper_hypothesis import repeated_span, seam_duplicates
from streamrt.tasks.whisper_stream_state import Word


def _toks(text):
    return [HypToken(i, " " + w, 100.0 * i, 100.0 * i + 100) for i, w in enumerate(text.split())]


def test_seam_drops_leading_words_repeating_the_committed_tail():
    max_words, window = 5, []
    committed = ["we", "went", "home."]
    # just after a trim the window holds no committed word; the model re-hears "went home"
    assert seam_duplicates(_toks("went home and slept"), window, committed, max_words) == 2
    assert seam_duplicates(_toks("Home and slept"), window, committed, max_words) == 1  # case and punctuation ignored
    assert seam_duplicates(_toks("and slept"), window, committed, max_words) == 0


def test_seam_check_only_right_after_a_trim():
    max_words, window = 5, []
    committed = ["we", "went"]
    window = [Word("went", [5], 0.0, 100.0)]
    assert seam_duplicates(_toks("went on"), window, committed, max_words) == 0


def test_seam_compares_at_most_seam_max_words():
    max_words, window = 2, []
    committed = ["a", "b", "c"]
    assert seam_duplicates(_toks("a b c d"), window, committed, max_words) == 0
    assert seam_duplicates(_toks("b c d"), window, committed, max_words) == 2


def _texts(texts, step_ms=100.0):
    """Tokens without attention, heard one after the other (``step_ms`` apart)."""
    return [HypToken(i, t, step_ms * i, step_ms * i + step_ms) for i, t in enumerate(texts)]


def _heard(words_and_peaks, frame_ms=20.0):
    """One token per word, each attending (a one-hot row over 500 frames) where given, in ms; the
    monotonic alignment's start is the running maximum, as ``token_times`` makes it."""
    toks, start = [], 0.0
    for i, (w, peak_ms) in enumerate(words_and_peaks):
        row = np.zeros(500, np.float32)
        row[int(peak_ms // frame_ms)] = 1.0
        start = max(start, peak_ms)
        toks.append(HypToken(i, " " + w, start, start + frame_ms, row))
    return toks


def test_back_to_back_repeated_run_of_words_is_cut():
    n, window = 3, []
    texts = [" the", " cat", " sat", ".", " the", " cat", " sat", "."]
    assert repeated_span(_texts(texts), window, 0.0, 20.0, n) == 4
    assert repeated_span(_texts([" the", " cat", " sat", " on", " the", " mat"]), window, 0.0, 20.0, n) is None
    # a run repeating the committed words just before it is cut at its start
    window = [Word(w, [1], 0.0, 1.0) for w in ("one", "two", "three")]
    assert repeated_span(_texts([" one", " two", " three", " four"]), window, 0.0, 20.0, n) == 0


def test_repeats_that_are_not_back_to_back_are_speech():
    n, window = 5, []
    text = "it was the age of wisdom, it was the age of foolishness, it was the epoch of belief"
    assert repeated_span(_texts([" " + w for w in text.split()]), window, 0.0, 20.0, n) is None


def test_a_short_repeat_re_reading_the_audio_just_transcribed_is_cut():
    """beckett.wav at 9 s (tiny.en, balanced): "... again. Fail better. Fail better", the second
    "Fail" attending back to 8.22 s, the second "better" to where the first one was heard."""
    n, window = 5, []
    hyp = _heard([("again.", 6900), ("Fail", 8480), ("better.", 8640), ("Fail", 8220), ("better", 8640)])
    assert repeated_span(hyp, window, 0.0, 20.0, n) == 3
    # the first copy committed already (in the window): the repeat is cut at the hypothesis' start
    window = [Word("Fail", [1], 8480.0, 8640.0), Word("better.", [2], 8640.0, 8640.0)]
    assert repeated_span(_heard([("Fail", 8220), ("better.", 8640)]), window, 0.0, 20.0, n) == 0


def test_a_short_repeat_heard_after_the_first_is_speech():
    """A speaker's own repeat ("no, no", "fail better, fail better") moves on through the audio."""
    n, window = 5, []
    assert repeated_span(_heard([("no,", 1000), ("no.", 1300)]), window, 0.0, 20.0, n) is None
    assert repeated_span(_heard([("Fail", 1000), ("better,", 1200), ("fail", 1500), ("better.", 1700)]), window, 0.0, 20.0, n) is None
    # without attention rows, the monotonic alignment says it is heard later: kept as well
    assert repeated_span(_texts([" no,", " no."]), window, 0.0, 20.0, n) is None
