"""The committed evaluation data (data/, made by scripts/make_testset.py) is complete and consistent.

Reads only WAV headers and the text files: no synthesizer, no model, well under a second.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import soundfile as sf
import yaml

DATA = Path(__file__).resolve().parent.parent / "data"
SAMPLE_RATE = 16000
MIN_CLIP_S, MAX_CLIP_S = 1.0, 60.0  # a short clip: one sentence up to one read paragraph
MIN_LONGFORM_S, MAX_LONGFORM_S = 120.0, 240.0  # the long-form file is 2-4 minutes
TSVS = {
    "testset.tsv": ("id", "audio", "reference"),
    "real.tsv": ("id", "audio", "reference"),
    "translation.tsv": ("id", "audio", "reference", "language"),
}


def read_tsv(name: str) -> tuple[list[str], list[list[str]]]:
    with open(DATA / name, encoding="utf-8", newline="") as f:
        lines = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return lines[0], lines[1:]


@pytest.mark.parametrize("name", sorted(TSVS))
def test_tsv_header_and_rows_have_the_eval_harness_columns(name):
    header, rows = read_tsv(name)
    assert tuple(header) == TSVS[name]
    assert rows, f"{name} has no rows"
    for row in rows:
        assert len(row) == len(header), f"{name}: row {row[:1]} has {len(row)} cells, header {len(header)}"
    ids = [row[0] for row in rows]
    assert len(set(ids)) == len(ids), f"{name}: duplicate ids"


@pytest.mark.parametrize("name", sorted(TSVS))
def test_every_row_is_16k_mono_pcm16_of_sane_length_with_a_reference(name):
    _, rows = read_tsv(name)
    for clip_id, audio, reference, *_ in rows:
        path = DATA / audio  # audio paths are relative to the TSV, which sits in data/
        assert path.is_file(), f"{name} row {clip_id}: {audio} missing"
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16"), (
            f"{name} row {clip_id}: {info.samplerate} Hz, {info.channels} ch, {info.subtype}"
        )
        assert MIN_CLIP_S <= info.duration <= MAX_CLIP_S, f"{name} row {clip_id}: {info.duration:.2f} s"
        assert reference.strip() == reference and reference, f"{name} row {clip_id}: empty or padded reference"
        # a speaking rate between 0.5 and 5 words per second: the reference belongs to this audio
        words_per_s = len(reference.split()) / info.duration
        assert 0.5 <= words_per_s <= 5.0, f"{name} row {clip_id}: {words_per_s:.2f} words/s"


def test_testset_spreads_over_all_five_synthetic_voices():
    _, rows = read_tsv("testset.tsv")
    voices = {clip_id.rsplit("_", 1)[1] for clip_id, *_ in rows}
    assert voices == {"slt", "kal16", "awb", "rms", "hts"}


def test_translation_languages_are_iso_codes_and_not_english():
    _, rows = read_tsv("translation.tsv")
    languages = {row[3] for row in rows}
    assert languages and languages <= {"de", "fr", "es", "it"}, languages


def test_real_recordings_carry_their_licence_notice():
    assert "MIT License" in (DATA / "real" / "LICENSE.moonshine-voice").read_text(encoding="utf-8")


def load_longform():
    folder = DATA / "longform"
    with open(folder / "segments.yaml", encoding="utf-8") as f:
        segments = yaml.safe_load(f)
    references = (folder / "references.txt").read_text(encoding="utf-8").splitlines()
    return folder, segments, references


def test_longform_is_16k_mono_and_two_to_four_minutes():
    folder, _, _ = load_longform()
    info = sf.info(str(folder / "longform.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    assert MIN_LONGFORM_S <= info.duration <= MAX_LONGFORM_S, info.duration


def test_longform_segments_are_ordered_disjoint_and_inside_the_audio():
    folder, segments, references = load_longform()
    assert len(segments) == len(references), "OmniSTEval needs one reference line per segment"
    assert all(r.strip() for r in references), "empty reference line"
    audio_s = sf.info(str(folder / "longform.wav")).duration
    previous_end = 0.0
    for i, seg in enumerate(segments):
        assert set(seg) == {"duration", "offset", "speaker_id", "wav"}, seg
        assert seg["wav"] == "longform.wav"
        assert seg["duration"] > 0.5, f"segment {i}: {seg['duration']} s"
        assert seg["offset"] >= previous_end, f"segment {i} starts at {seg['offset']} before {previous_end}"
        previous_end = seg["offset"] + seg["duration"]
    assert previous_end <= audio_s, f"last segment ends at {previous_end:.3f} s, audio is {audio_s:.3f} s"
    # no long unsegmented stretch: speech is covered except the pauses between sentences
    covered = sum(seg["duration"] for seg in segments)
    assert covered / audio_s > 0.7, f"segments cover {covered:.1f} of {audio_s:.1f} s"


def test_longform_segments_hold_speech_and_gaps_hold_silence():
    folder, segments, _ = load_longform()
    audio, rate = sf.read(str(folder / "longform.wav"), dtype="float32")
    for i, seg in enumerate(segments):
        start, end = round(seg["offset"] * rate), round((seg["offset"] + seg["duration"]) * rate)
        assert abs(audio[start:end]).max() > 0.1, f"segment {i} is silent"
        gap_end = round(segments[i + 1]["offset"] * rate) if i + 1 < len(segments) else len(audio)
        assert abs(audio[end:gap_end]).max(initial=0.0) < 0.01, f"speech after segment {i} ends"
