"""Long-form scoring on a two-sentence recording computed by hand, and the input checks.

Segments A = [0 s, 2 s) "a b" and B = [3 s, 5 s) "c d"; the recording ends at 5000 ms.
Output "a b c d" emitted at 1000, 2000, 4000, 5500 ms; compute so far 100, 200, 300, 300 ms."""

from __future__ import annotations

import json

import pytest

from metrics import Instance
from metrics.longform import score_long_form
from metrics.segments import Segment, read_segments
from streamrt.errors import DataError

SEGMENTS = [Segment(wav="/x/talk.wav", offset_s=0, duration_s=2, reference="a b"),
            Segment(wav="/x/talk.wav", offset_s=3, duration_s=2, reference="c d")]
TALK = Instance(index=0, prediction="a b c d", delays=[1000, 2000, 4000, 5500],
                elapsed=[1100, 2200, 4300, 5800], source_length=5500, source=["talk.wav"])


def test_long_yaal_cuts_at_the_recording_end_polak2025_sec5():
    out = score_long_form([TALK], SEGMENTS, computation_aware=True, quality=False)
    # A: 1000, 2000 - 1000 -> 1000.  B (times - 3000 = 1000, 2500; cut at 5000 - 3000): 1000
    assert out["LongYAAL"] == 1000
    # raw elapsed: A: 1100, 2200 - 1000 -> 1150.  B: 1300 (2800 cut) -> 1225
    assert out["LongYAAL_CA"] == 1225


def test_long_yaal_ca_with_omnisteval_elapsed_fix():
    # e' = 1100, 2100, 4100, 5500: A: 1100, 1100 -> 1100.  B: 1100 (2500 cut) -> 1100
    out = score_long_form([TALK], SEGMENTS, computation_aware=True, quality=False, fix_elapsed=True)
    assert out["LongYAAL_CA"] == 1100


def test_stream_laal_papi2024_sec4_1_laal_per_sentence_on_times_from_its_start():
    out = score_long_form([TALK], SEGMENTS, computation_aware=True, quality=False)
    # A: 1000, 1000 -> 1000.  B: 1000, 2500 - 1000 -> 1250.  mean 1125
    assert out["StreamLAAL"] == 1125
    # de-accumulated elapsed 1100, 2100, 4100, 5500: A: 1100, 1100; B: 1100, 1500 -> (1100 + 1300) / 2
    assert out["StreamLAAL_CA"] == 1200


def test_quality_scores_the_recording():
    from metrics.quality import bleu

    out = score_long_form([TALK], SEGMENTS)
    assert out["WER"] == 0
    assert out["BLEU"] == bleu(["a b", "c d"], ["a b", "c d"])  # BLEU on the mWER pieces


def test_recordings_are_matched_by_base_name_and_a_missing_one_is_reported():
    other = Instance(index=0, prediction="a", delays=[1], elapsed=[1], source_length=9, source="b.wav")
    with pytest.raises(DataError, match="no instance in the log for recording 'talk.wav'"):
        score_long_form([other], SEGMENTS, quality=False)


def _write(tmp_path, entries, refs):
    seg, ref = tmp_path / "seg.yaml", tmp_path / "ref.txt"
    seg.write_text(entries if isinstance(entries, str) else json.dumps(entries))
    ref.write_text("".join(r + "\n" for r in refs))
    return seg, ref


def test_read_segments_yaml_in_seconds(tmp_path):
    seg, ref = _write(tmp_path, "- {duration: 2.5, offset: 0.25, speaker_id: s, wav: t.wav}\n", [" Hello. "])
    assert read_segments(seg, ref) == [Segment(wav="t.wav", offset_s=0.25, duration_s=2.5, reference="Hello.")]


@pytest.mark.parametrize("entries, refs, problem", [
    ([{"wav": "t.wav", "offset": 0, "duration": 1}], ["a", "b"], "2 reference lines for 1 segments"),
    ([{"wav": "t.wav", "offset": 0}], ["a"], ":1: segment entry needs 'wav', 'offset' and 'duration'"),
    ([{"wav": "t.wav", "offset": 0, "duration": 1}, {"wav": "t.wav", "offset": 1, "duration": 0}], ["a", "b"],
     ":2: segment duration must be positive"),
    ("- {wav: [", ["a"], "not valid YAML"),
])
def test_bad_segment_files_name_the_entry(tmp_path, entries, refs, problem):
    seg, ref = _write(tmp_path, entries, refs)
    with pytest.raises(DataError, match=problem.replace("(", "\\(")):
        read_segments(seg, ref)
