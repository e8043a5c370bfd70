"""The room around the simulated user (``streamrt.evaluation.dialogue_room``): the agent's echo is
played back as the client plays it (causal, cut at ``interrupted``), background speech goes into
answers with no scripted overlay, and the camera's frames show moving lips exactly while the
user's voice sounds. Against the energy-triggered stand-in agent of test_dialogue.py, which stops
after 300 ms of loud input: its own echo and the background voice interrupt it, and the metrics
name each (the real session's lips are tests/streamrt/dialogue/test_dialogue_session_lips.py)."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest

from metrics.dialogue import UserSpeech, dialogue_scores
from streamrt.errors import ConfigError
from streamrt.evaluation.dialogue import RunnerSettings, VirtualClock, run_script
from streamrt.evaluation.dialogue_room import (CameraPath, EchoPath, FaceLoops, Room, RoomSettings, lips_move, parse_gain,
                                               voice_since)
from streamrt.evaluation.dialogue_script import ClipSynth, Script, ScriptTurn
from streamrt.dialogue.events import UserLipsEvent
from streamrt.types import LipActivity
from tests.streamrt.evaluation.test_dialogue import Idle, StandInAgent


def test_echo_is_played_from_release_after_the_previous_chunk_delayed_and_cut_at_the_interruption():
    echo = EchoPath(0.5, delay_ms=10.0)
    echo.agent_audio(100.0, 1, np.ones(1600, np.float32), 16000)  # 100 ms released at 100 ms
    echo.agent_audio(150.0, 1, np.ones(1600, np.float32), 16000)  # queued behind it: plays from 200 ms
    x = echo.read(0, 16 * 400)
    assert not x[:16 * 110].any() and np.allclose(x[16 * 110:16 * 310], 0.5) and not x[16 * 310:].any()
    echo.agent_audio(400.0, 2, np.ones(16000, np.float32), 16000)
    echo.interrupted(500.0, 2)  # the client drops it: only 410..510 ms was heard
    y = echo.read(16 * 400, 16 * 2000)
    assert np.count_nonzero(y) == 16 * 100
    echo.agent_audio(3000.0, 3, np.ones(16000, np.float32), 16000)  # 1 s from 3000 ms
    echo.paused(3200.0, 3)  # the client drops it at 3200 (+10 ms); it comes again from 3500
    echo.agent_audio(3500.0, 3, np.ones(1600, np.float32), 16000)
    z = echo.read(16 * 2000, 16 * 5000)
    assert np.count_nonzero(z) == 16 * 300 and z[16 * 1510] and not z[16 * 1300]
    resampled = EchoPath(1.0, 0.0)
    resampled.agent_audio(0.0, 1, np.full(24000, 0.1, np.float32), 24000)  # 1 s at 24 kHz
    assert abs(np.count_nonzero(resampled.read(0, 32000)) - 16000) < 100
    assert parse_gain("-6dB") == pytest.approx(0.501, abs=1e-3) and parse_gain("0.25") == 0.25
    with pytest.raises(ConfigError, match="decibels"):
        parse_gain("loud")


def test_the_camera_shows_moving_lips_exactly_while_the_users_voice_sounds():
    user = [UserSpeech("turn", 1000, 3000, ((1500, 2500),)), UserSpeech("background", 4000, 6000)]
    assert [lips_move(t, user) for t in (999, 1000, 1600, 2600, 3000, 5000)] == [False, True, False, True, False,
                                                                                 False]
    loops = FaceLoops(10.0, tuple(np.full((2, 2, 3), 1, np.uint8) for _ in range(3)),
                      tuple(np.zeros((2, 2, 3), np.uint8) for _ in range(3)))
    room = Room(RoomSettings(video="face", fps=10.0), loops)
    frames = room.frames(1200.0, user) + room.frames(1200.0, user) + room.frames(1600.0, user)
    assert [f.time_ms for f in frames] == [100.0 * i for i in range(17)]  # each frame once, in order
    assert [int(f.pixels[0, 0, 0]) for f in frames] == [0] * 10 + [1] * 5 + [0] * 2
    still = Room(RoomSettings(video="still", fps=10.0), loops).frames(3000.0, user)
    assert not any(f.pixels.any() for f in still)
    assert Room(RoomSettings()).frames(3000.0, user) == []
    with pytest.raises(ConfigError, match="face loops"):
        Room(RoomSettings(video="face"))
    with pytest.raises(ConfigError, match="video must be one of"):
        RoomSettings(video="on")


def test_each_stretch_of_voice_starts_the_talking_loop_at_its_own_seeded_phase():
    user = [UserSpeech("turn", 1000, 3000, ((1500, 2500),))]
    assert [voice_since(t, user) for t in (900, 1000, 1400, 2000, 2600)] == [None, 1000, 1000, None, 2500]
    loops = FaceLoops(10.0, tuple(np.full((2, 2, 3), i + 1, np.uint8) for i in range(40)),
                      tuple(np.zeros((2, 2, 3), np.uint8) for _ in range(3)))

    def talk(seed):  # the talking frames' loop indices, per stretch
        frames = Room(RoomSettings(video="face", fps=10.0, video_seed=seed), loops).frames(3500.0, user)
        shown = [(f.time_ms, int(f.pixels[0, 0, 0]) - 1) for f in frames if f.pixels.any()]
        return [i for t, i in shown if t < 2000], [i for t, i in shown if t > 2000]

    first, second = talk(0)
    assert len(first) == 5 and len(second) == 5  # 1000..1400 and 2500..2900 at 10 fps
    for run in (first, second):  # consecutive frames of the loop within a stretch
        assert [(i - run[0]) % 40 for i in run] == [0, 1, 2, 3, 4]
    assert talk(0) == (first, second)  # seeded
    phases = {talk(seed)[k][0] for seed in range(6) for k in (0, 1)}
    assert len(phases) > 6  # stretches start at different places in the syllables


def test_a_late_jittered_camera_delivers_frames_in_order_with_their_media_times_and_drops_some():
    taken = [100.0 * i for i in range(400)]
    path = CameraPath(delay_ms=20.0, jitter_ms=150.0, seed=3)
    arrivals = [path.arrival(t) for t in taken]
    late = [a - t for a, t in zip(arrivals, taken)]
    assert all(b >= a for a, b in zip(arrivals, arrivals[1:]))  # in order: none overtakes another
    assert min(late) >= 20.0 and max(late) <= 20.0 + 150.0 + 100.0  # held up at most one frame behind
    assert any(b - a > 150.0 for a, b in zip(arrivals, arrivals[1:]))  # jitter: the rate seen varies
    again, lossy_path = CameraPath(20.0, 150.0, seed=3), CameraPath(drop=0.25, seed=1)
    assert [again.arrival(t) for t in taken] == arrivals  # seeded
    lossy = [lossy_path.arrival(t) for t in taken]
    assert 0.15 < sum(a is None for a in lossy) / len(taken) < 0.35
    assert [a for a in lossy if a is not None] == [t for t, a in zip(taken, lossy) if a is not None]  # on time

    loops = FaceLoops(10.0, tuple(np.full((2, 2, 3), 1, np.uint8) for _ in range(3)),
                      tuple(np.zeros((2, 2, 3), np.uint8) for _ in range(3)))
    user = [UserSpeech("turn", 1000, 3000)]
    on_time = Room(RoomSettings(video="face", fps=10.0), loops).frames(5000.0, user)
    room = Room(RoomSettings(video="face", fps=10.0, video_delay_ms=50.0, video_jitter_ms=60.0), loops)
    got = {}  # frame time -> the feed it came with
    for until in np.arange(0.0, 5200.0, 20.0):
        for f in room.frames(float(until), user):
            assert f.time_ms + 50.0 <= until < f.time_ms + 50.0 + 60.0 + 100.0 + 20.0  # late, within its path
            got[f.time_ms] = (until, int(f.pixels[0, 0, 0]))
    times = list(got)
    assert times == sorted(times) and times[:41] == [f.time_ms for f in on_time][:41]  # not re-timed, in order
    assert [got[t][1] for t in times[:41]] == [int(f.pixels[0, 0, 0]) for f in on_time][:41]  # the lips of then
    assert len({round(got[t][0] - t) for t in times}) > 3  # jittered
    dropped = Room(RoomSettings(video="still", fps=10.0, video_drop=0.5, video_seed=7), loops).frames(5000.0, user)
    assert 10 < len(dropped) < 41 and all(f.time_ms % 100.0 == 0 for f in dropped)


@pytest.mark.parametrize("kwargs, message", [
    (dict(video="face", video_jitter_ms=-1.0), r"video_jitter_ms must be in \[0, 10000\] ms, got -1.0"),
    (dict(video="face", video_delay_ms=2e4), r"video_delay_ms must be in \[0, 10000\] ms"),
    (dict(video="face", video_drop=1.0), r"video_drop must be a fraction of frames in \[0, 1\), got 1.0"),
    (dict(video="face", fps=0.5), r"fps must be in \[1, 60\] frames/s, got 0.5"),
    (dict(video_jitter_ms=60.0), "need a camera"),
])
def test_the_cameras_path_settings_are_checked_with_the_setting_and_its_limits(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RoomSettings(**kwargs)
    assert RoomSettings(video="still", fps=5.0, video_jitter_ms=60.0).describe()["video_jitter_ms"] == 60.0


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")
@pytest.mark.parametrize("room, echo, background", [(RoomSettings(), 0, 0),
                                                    (RoomSettings(echo_gain=0.5), 1, 0),
                                                    (RoomSettings(background=True), 0, 1)])
def test_echo_and_background_speech_reach_the_microphone_and_are_scored_apart(tmp_path, room, echo, background):
    script = Script("s", "slt", (ScriptTurn(("What is the capital of France?",)),), gap_ms=500)
    clock = VirtualClock("none")
    run = asyncio.run(run_script(script, StandInAgent(clock), Idle(), clock, ClipSynth(tmp_path / "clips"),
                                 RunnerSettings(answer_timeout_s=4.0), Room(room)))
    s = dialogue_scores([run.log])
    assert s["turns"] == 1 and s["unanswered"] == 0
    assert s["background"] == background
    first = min(run.interrupted, default=None)
    assert (first == 1) == bool(echo or background)  # the stand-in hears echo and background as the user
    assert (s["echo_barge_ins"] >= 1) == bool(echo) and s["background_barge_ins"] == background
    if background:
        (bg,) = [u for u in run.log.user if u.kind == "background"]
        start = min(e.time_ms for e in run.log.events if e.type == "agent_audio")
        assert bg.onset_ms == pytest.approx(start + 800, abs=25)  # background_at_ms into the answer


class SeeingStandIn(StandInAgent):
    """The stand-in with a camera: every frame it gets is scored at once (active when the frame
    shows the talking loop) and sent back as a ``lips`` event."""

    def receive_video(self, frame):
        moving = bool(frame.pixels.any())
        self.out.append(UserLipsEvent((LipActivity(frame.time_ms, float(moving), moving),), self._ms()))


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")
def test_late_jittered_frames_reach_the_agent_late_in_order_and_the_log_shows_what_it_saw(tmp_path):
    script = Script("s", "slt", (ScriptTurn(("What is the capital of France?",)),), gap_ms=500)
    loops = FaceLoops(10.0, tuple(np.full((2, 2, 3), 1, np.uint8) for _ in range(3)),
                      tuple(np.zeros((2, 2, 3), np.uint8) for _ in range(3)))
    clock = VirtualClock("none")
    room = Room(RoomSettings(video="face", fps=10.0, video_delay_ms=40.0, video_jitter_ms=60.0), loops)
    run = asyncio.run(run_script(script, SeeingStandIn(clock), Idle(), clock, ClipSynth(tmp_path / "clips"),
                                 RunnerSettings(answer_timeout_s=4.0), room))
    seen = [(e.time_ms, *item.split(":")) for e in run.log.events if e.type == "lips" for item in e.text.split()]
    times = [float(t) for _, t, _ in seen]
    assert times == sorted(times) and times == [100.0 * i for i in range(len(times))] and len(times) > 30
    assert all(40.0 <= at - t < 40.0 + 60.0 + 100.0 + 20.0 for at, t in zip((a for a, _, _ in seen), times))
    (turn,) = [u for u in run.log.user if u.kind == "turn"]
    # the mouth opens after the voice's first sample (a frame taken at that very instant shows it shut)
    assert [state for _, t, state in seen] == ["a" if turn.onset_ms < float(t) < turn.offset_ms else "s"
                                                for _, t, _ in seen]
