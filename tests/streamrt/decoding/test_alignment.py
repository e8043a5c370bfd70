import numpy as np

from streamrt.decoding import compression_ratio, dtw_frames, monotonic_argmax, token_times, word_spans


def _diag(n_tok, n_frames, frames):
    att = np.full((n_tok, n_frames), 0.01)
    for i, f in enumerate(frames):
        att[i, f] = 1.0
    return att / att.sum(1, keepdims=True)


def test_monotonic_argmax_never_goes_back():
    att = _diag(4, 20, [3, 8, 5, 12])
    assert monotonic_argmax(att).tolist() == [3, 8, 8, 12]
    assert monotonic_argmax(att, first_frame=10).tolist() == [10, 10, 10, 12]


def test_dtw_follows_a_monotonic_diagonal():
    att = _diag(4, 30, [2, 9, 15, 24])
    frames = dtw_frames(att)
    assert np.all(np.diff(frames) >= 0)
    assert abs(frames[1] - 9) <= 1 and abs(frames[2] - 15) <= 1 and abs(frames[3] - 24) <= 1


def test_token_times_convert_frames_to_media_ms():
    att = _diag(3, 50, [5, 10, 20])
    starts, ends = token_times(att, window_start_ms=1000.0, frame_ms=20.0)
    assert starts.tolist() == [1100.0, 1200.0, 1400.0]
    assert ends.tolist() == [1200.0, 1400.0, 1420.0]
    s2, _ = token_times(att, window_start_ms=0.0, frame_ms=20.0, last_frame=8)
    assert s2.max() <= 7 * 20.0


def test_word_spans_merge_pieces_and_punctuation():
    assert word_spans([" Hel", "lo", ",", " world", "."]) == [(0, 3), (3, 5)]
    assert word_spans(["so", " it"]) == [(0, 1), (1, 2)]
    assert word_spans([]) == []


def test_compression_ratio_flags_loops():
    assert compression_ratio("the cat sat on the mat") < 2.0
    assert compression_ratio("thank you " * 30) > 2.4
