import pytest

from policies.base import HistorySelection, Write
from policies.streamatt import StreamAtt
from streamrt.errors import PolicyOptionError
from policy_views import token, view


def test_streamatt_decides_like_alignatt():
    # frames=4 on a 50-frame window: tokens peaking at frames >= 46 wait
    toks = [token(" a", frame=10), token(" b", frame=30), token(" c", frame=47), token(" d", frame=20)]
    assert StreamAtt(frames=4).decide(view(toks)) == Write(2)


def test_streamatt_keeps_last_words_and_the_audio_they_align_to():
    # Papi et al. 2024, Sec. 3: textual history of fixed words; audio before it is discarded
    committed = [f"w{i}" for i in range(30)]
    starts = [i * 300.0 for i in range(30)]
    sel = StreamAtt(history_words=20).select_history(
        view([], source_ms=9500, committed=committed, committed_start_ms=starts))
    assert sel == HistorySelection(text_words=20, audio_from_ms=starts[10])


def test_streamatt_caps_audio_history():
    committed = [f"w{i}" for i in range(5)]
    starts = [0.0, 100.0, 200.0, 300.0, 400.0]
    sel = StreamAtt(history_words=20, max_history_ms=1000).select_history(
        view([], source_ms=5000, committed=committed, committed_start_ms=starts))
    assert sel == HistorySelection(text_words=5, audio_from_ms=4000.0)


def test_streamatt_without_history_drops_audio_to_last_commit():
    sel = StreamAtt(history_words=0).select_history(
        view([], source_ms=3000, committed=["a", "b"], committed_start_ms=[500.0, 1200.0]))
    assert sel == HistorySelection(0, 1200.0)


def test_streamatt_without_alignment_keeps_the_window():
    sel = StreamAtt().select_history(view([], source_ms=3000, committed=["a"], window_start_ms=800.0))
    assert sel == HistorySelection(1, 800.0)


@pytest.mark.parametrize("opts", [{"history_words": -1}, {"max_history_ms": 0}, {"frames": 0}])
def test_streamatt_rejects_bad_settings(opts):
    with pytest.raises(PolicyOptionError):
        StreamAtt(**opts)
