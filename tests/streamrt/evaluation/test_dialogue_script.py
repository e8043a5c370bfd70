"""The dialogue script file (data/dialogues.yaml) and the clip synthesizer's cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from streamrt.errors import DataError
from streamrt.evaluation.dialogue_script import ClipSynth, read_scripts, trim_and_scale

SCRIPTS = Path(__file__).resolve().parents[3] / "data" / "dialogues.yaml"


def test_the_bundled_scripts_have_enough_turns_pauses_backchannels_and_interruptions():
    scripts = read_scripts(SCRIPTS)
    turns = [t for s in scripts for t in s.turns]
    interrupts = sum(t.interrupt is not None for t in turns)
    assert len(turns) + interrupts >= 30  # answered turns: enough for a p90 to mean something
    assert sum(len(t.parts) - 1 for t in turns) >= 20  # mid-turn pauses: 1 in 20 is a step of 5 %
    assert sum(t.backchannel is not None for t in turns) >= 8 and interrupts >= 5
    assert all(t.pause_s == 1.0 for t in turns)
    quick = read_scripts(SCRIPTS, only=["quick"])
    assert [s.id for s in quick] == ["quick"] and len(quick[0].turns) == 2


@pytest.mark.parametrize("text, problem", [
    ("scripts: [{id: a, turns: []}]", "script 1: a script needs at least one turn"),
    ("scripts: [{id: a, voice: robot, turns: [{say: hi}]}]", "unknown voice 'robot'"),
    ("scripts: [{id: a, turns: [{say: hi, backchannel: {say: ok}}]}]", "turn 1: backchannel is a mapping {say, at_ms}"),
    ("scripts: [{id: a, turns: [{say: [hi, '']}]}]", "turn 1: 'say' needs non-empty text"),
    ("scripts: [{id: a, turns: [{say: hi, pause_s: 0}]}]", "pause_s must be > 0, got 0.0"),
    ("scripts: [{turns: [{say: hi}]}]", "script 1: missing key 'id'"),
    ("turns: []", "a mapping with a list under 'scripts'"),
])
def test_a_bad_script_file_names_the_script_and_the_problem(tmp_path, text, problem):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(DataError, match=f"s.yaml: .*{problem}".replace("[", "\\[").replace("{", "\\{")):
        read_scripts(path)


def test_an_unknown_script_id_lists_the_known_ones():
    with pytest.raises(DataError, match="no script 'nope'; the file has quick, travel"):
        read_scripts(SCRIPTS, only=["nope"])


def test_trim_cuts_quiet_ends_by_10_ms_frames_and_scales_the_peak():
    x = np.zeros(1600, dtype=np.float32)
    x[480:800] = 0.25  # voice from 30 ms to 50 ms
    y = trim_and_scale(x)
    assert len(y) == 320 and float(np.max(y)) == pytest.approx(0.5)


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")
def test_clips_are_cached_by_voice_and_text(tmp_path):
    synth = ClipSynth(tmp_path)
    a = synth("Hello there.", "slt")
    assert len(list(tmp_path.glob("*.wav"))) == 1
    assert np.array_equal(synth("Hello there.", "slt"), a)  # read back, same samples
    synth("Hello there.", "kal16")
    assert len(list(tmp_path.glob("*.wav"))) == 2
    assert 0.3 < len(a) / 16000 < 2.0 and float(np.max(np.abs(a))) == pytest.approx(0.5, abs=1e-3)
