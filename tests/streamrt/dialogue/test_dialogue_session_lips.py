"""Lips fused into the dialogue's echo guard, in virtual time: the agent speaks a long greeting (the
``ToneTtsModel`` stand-in) and the same real speech (flite, through the real silero VAD) comes in
over it, with the camera showing still lips, moving lips, no face, or no camera at all. The lip
model is the real rule (``LipActivityModel``) on a scripted landmarker (each frame says the mouth
opening it shows), on the same scheduler as the other models; the detector is not the point here
(tests/streamrt/tasks/test_lips.py runs the real FaceMesh)."""

from __future__ import annotations

import asyncio

import numpy as np

from policies.turn_taking.registry import create
from streamrt.clock import ManualClock
from streamrt.dialogue.events import (AgentAudioEvent, AgentTurnEndEvent, AgentTurnStartEvent, InterruptedEvent,
                                      UserLipsEvent)
from streamrt.dialogue.models import DialogueModels
from streamrt.dialogue.session import DialogueSession
from streamrt.dialogue.settings import DialogueSettings
from streamrt.models.vad import load_vad
from streamrt.scheduler import Scheduler, SchedulerSettings
from streamrt.tasks.lips import LipActivityModel
from streamrt.testing import CountingModel, EchoTextModel, ToneTtsModel
from streamrt.types import ErrorEvent, VideoFrame
from tests.streamrt.dialogue.dialogue_helpers import silence, speech
from tests.streamrt.video_helpers import ScriptedLandmarker, scripted_frame

GREETING = " ".join(["word"] * 40)  # 4 s of agent speech (100 ms a word)
FRAME_MS = 1000 / 15  # the camera at 15 fps


def still(i: int) -> float | None:
    return 0.05  # a face, mouth slightly open, not moving


def talking(i: int) -> float | None:
    return (0.02, 0.06, 0.12, 0.06)[i % 4]  # opening and shutting ~4 times a second


def no_face(i: int) -> float | None:
    return None


def starts_talking(i: int) -> float | None:
    return still(i) if i * FRAME_MS < 500 else talking(i)  # still until the user's speech starts


def _models_on_a_scheduler(clock):
    """The stand-in ASR, LLM and TTS, the real VAD and the real lip rule on a scripted landmarker."""
    models = DialogueModels(asr=CountingModel(word_ms=300), llm=EchoTextModel(), tts=ToneTtsModel(word_ms=100),
                            vad=load_vad(), lips=LipActivityModel(ScriptedLandmarker()))
    sched = Scheduler(clock=clock, settings=SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=None))
    models.add_to(sched)
    return models, sched


async def _play(s, sched, clock, track, camera, late_ms=0.0, frame_ms=FRAME_MS):
    """Feeds ``track`` in real time, 32 ms (one VAD frame) at a time, each with the camera's frames
    taken with it (``camera`` as in ``_dialogue``; each frame ``late_ms`` late; one every
    ``frame_ms``); yields after each."""
    video_i = 0
    for i in range(0, len(track) - 511, 512):
        while camera is not None and video_i * frame_ms + late_ms <= (i + 512) / 16:
            s.receive_video(VideoFrame(scripted_frame(camera(video_i)), video_i * frame_ms))
            video_i += 1
        s.receive_audio(track[i:i + 512])
        for _ in range(3):
            await asyncio.sleep(0)
            await sched.wait_idle()
        clock.advance(0.032)
        yield


async def _dialogue(camera, settings=DialogueSettings(), late_ms=0.0, runs=None):
    """The greeting plays from t=0; user speech from 0.5 s over it; ``camera``: the mouth opening of
    frame i (None: no face), or None for no camera; each frame reaches the session ``late_ms`` after
    the audio taken with it. ``runs``: a list that gets (clock s, media ms) where a speech run
    started. -> (events, session)"""
    clock = ManualClock()
    models, sched = _models_on_a_scheduler(clock)
    await sched.start()
    s = DialogueSession(models, sched, clock, create("silence", {"min_interrupt_ms": 600}), greeting=GREETING,
                        settings=settings)
    track = np.concatenate([silence(0.5), speech("Please call Stella and ask her to bring these things."),
                            silence(1.0)])
    events = []
    async for _ in _play(s, sched, clock, track, camera, late_ms):
        events += [(round(clock.now(), 3), e) for e in s.events()]
        if runs is not None and s.speech.runs > len(runs):
            runs.append((round(clock.now(), 3), s.speech.start_ms))
    s.receive_eof()
    await sched.wait_idle()
    events += [(round(clock.now(), 3), e) for e in s.events()]
    await sched.stop()
    return events, s


def _kinds(events):
    """The dialogue's events but the camera's own (``UserLipsEvent``: the scores, reported as they come)."""
    return [(t, type(e).__name__, getattr(e, "turn", None), getattr(e, "text", None),
             len(e.samples) if isinstance(e, AgentAudioEvent) else None) for t, e in events
            if not isinstance(e, UserLipsEvent)]


async def test_speech_over_still_lips_neither_pauses_nor_interrupts_the_agent():
    events, s = await _dialogue(still)
    assert not [e for _, e in events if isinstance(e, (InterruptedEvent, ErrorEvent))]
    (end,) = [e for _, e in events if isinstance(e, AgentTurnEndEvent)]
    assert end.text == GREETING  # the agent said all of it
    audio = sum(len(e.samples) for _, e in events if isinstance(e, AgentAudioEvent))
    assert audio == 40 * 100 * 24  # every word released: never paused and cut
    assert s.speech.runs == 0 and s.summary()["interruptions"] == 0
    # the lips made the difference: with them off, the same speech over the same face barges in
    events, s = await _dialogue(still, DialogueSettings(lips_window_ms=None))
    assert [e for _, e in events if isinstance(e, InterruptedEvent)]


async def test_the_same_speech_with_moving_lips_interrupts_the_agent():
    events, s = await _dialogue(talking)
    (cut,) = [e for _, e in events if isinstance(e, InterruptedEvent)]
    assert cut.turn == 1 and len(cut.heard_text.split()) < 40
    assert s.lips.state_between(500.0, 1500.0) == "active"  # it was the lips, not their absence
    assert not [e for _, e in events if isinstance(e, AgentTurnEndEvent) and e.turn == 1]


async def test_no_face_and_no_camera_give_exactly_the_audio_only_dialogue():
    audio_only, _ = await _dialogue(None)
    faceless, s = await _dialogue(no_face)
    assert s.video is not None and s.lips.latest_ms is not None  # the frames were scored: unknown
    assert [e for _, e in audio_only if isinstance(e, InterruptedEvent)]  # the speech barges in without lips
    assert _kinds(faceless) == _kinds(audio_only)


async def test_video_without_a_lip_model_is_refused_by_name():
    clock = ManualClock()
    models = DialogueModels(asr=CountingModel(), llm=EchoTextModel(), tts=ToneTtsModel(), vad=load_vad())
    sched = Scheduler(clock=clock, settings=SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=None))
    models.add_to(sched)
    s = DialogueSession(models, sched, clock, create("silence"))
    s.receive_video(VideoFrame(scripted_frame(0.05), 0.0))
    (err,) = s.events()
    assert isinstance(err, ErrorEvent) and err.code == "video_unavailable" and not err.fatal


async def test_a_decision_waits_for_late_lips_at_most_lips_max_wait_ms():
    """Frames 90 ms late on the network: each VAD frame waits for the lips of its time (within
    ``lips_max_wait_ms``, 100 ms), so the speech run starts where it does with frames on time,
    only later on the clock; judged without waiting, the stale still lips veto the user's first
    speech frames and the run starts later in the speech."""
    on_time, late, no_wait = [], [], []
    await _dialogue(starts_talking, runs=on_time)
    events, s = await _dialogue(starts_talking, late_ms=90.0, runs=late)
    await _dialogue(starts_talking, DialogueSettings(lips_max_wait_ms=None), late_ms=90.0, runs=no_wait)
    assert on_time and late and no_wait
    assert late[0][1] == on_time[0][1]  # the same frame starts the run
    assert 0 < late[0][0] - on_time[0][0] <= 0.1 + 0.032  # decided later, by at most the wait (+ a feed)
    assert no_wait[0][1] > on_time[0][1]  # stale lips: the run starts later in the speech
    assert [e for _, e in events if isinstance(e, InterruptedEvent)]  # and the user still barges in


async def test_frames_later_than_the_wait_fall_back_to_audio_only_and_nothing_stalls():
    """The camera 2 s behind the audio (past lips_max_wait_ms and the timeline's gaps): it is not
    waited for, the lips are unknown when a frame is judged, so the still face cannot hold the
    speech back: the dialogue is the audio-only one, event for event and time for time."""
    audio_only, _ = await _dialogue(None)
    events, s = await _dialogue(still, late_ms=2000.0)
    assert s.lips.latest_ms is not None  # frames did come, too late to count
    assert _kinds(events) == _kinds(audio_only)


QUESTION = "What is the capital of France?"
QUESTION_END = 500 + len(speech(QUESTION)) / 16  # ms of media


async def _answer_at(camera):
    """The agent silent, the user asks QUESTION at 0.5 s, then 3 s of silence; ``camera`` as in
    ``_dialogue``. -> the media ms at which the agent's answer starts (None: never)."""
    clock = ManualClock()
    models, sched = _models_on_a_scheduler(clock)
    await sched.start()
    s = DialogueSession(models, sched, clock, create("silence", {"silence_ms": 600}))
    track = np.concatenate([silence(0.5), speech(QUESTION), silence(3.0)])
    start = None
    async for _ in _play(s, sched, clock, track, camera):
        if any(isinstance(e, AgentTurnStartEvent) for e in s.events()) and start is None:
            start = s.media_ms
    await sched.stop()
    return start


async def test_the_turn_is_not_answered_while_the_lips_still_move():
    """End of turn with a camera (``TurnView.lips``): the user's voice stops but the lips go on
    moving for 1.5 s (still talking, too softly for the VAD): the agent waits until they stop;
    lips that move with the voice only, or no camera, get the answer after the policy's silence."""
    def with_voice(i):
        return talking(i) if 500 <= i * FRAME_MS < QUESTION_END else still(i)

    def moving_on(i):
        return talking(i) if 500 <= i * FRAME_MS < QUESTION_END + 1500 else still(i)

    no_camera = await _answer_at(None)
    assert QUESTION_END + 600 <= no_camera < QUESTION_END + 1000
    assert await _answer_at(with_voice) == no_camera  # lips that moved with the words only: no delay
    assert await _answer_at(moving_on) >= QUESTION_END + 1500  # held while the lips moved


async def test_speech_over_still_lips_starts_no_turn():
    """Another voice (a TV, someone else) while the camera shows the user's lips still, the agent
    silent: it is not the user's turn, so nothing is answered; without the camera it is."""
    assert await _answer_at(still) is None
    assert await _answer_at(None) is not None


def test_speech_held_back_by_still_lips_counts_once_the_lips_are_seen_moving():
    """The lip score lags the mouth: the user's first speech frames still read ``still``. Up to
    ``lips_onset_ms`` of them count once the lips read active, so the run starts where it would
    without a camera; longer speech over still lips (the echo before it) earns no more; speech
    over lips that stay still never starts a run."""
    from streamrt.dialogue.speech import UserSpeech

    starts = []

    def run(lips, settings=DialogueSettings()):
        sp = UserSpeech(settings, 32.0, 16000)
        for k, state in enumerate(lips):
            if sp.frame(0.9, None, state):
                starts.append(sp.start_ms)
                return k
        return None

    assert run(["unknown"] * 10) == 1  # min_speech_ms 64: the second frame
    assert run(["still"] * 3 + ["active"] * 7) == 3  # three held frames count: no later than without lips
    assert run(["still"] * 3 + ["active"] * 7, DialogueSettings(lips_onset_ms=None)) == 4
    guarded = DialogueSettings(vad_threshold=0.5, min_speech_ms=160.0)  # a run as long as the echo guard's
    assert run(["still"] * 20 + ["active"] * 10, guarded) == 20
    assert starts[-1] == 21 * 32 - 150 - 32  # at most lips_onset_ms (150 ms) of credit, not the 640 ms held
    assert run(["still"] * 30, guarded) is None


async def _answer_after_pause(settings, fps=15.0, still_ms=300.0):
    """The agent silent; the user says FIRST, pauses 0.7 s, says SECOND; the camera (``fps``) shows
    the lips moving with FIRST but still for the first ``still_ms`` of SECOND (with the score's own
    lag, ~500 ms at 15 fps: much exaggerated). -> (media ms where the answer starts or None, media
    ms where SECOND ends)."""
    first, second = speech("Please call Stella"), speech("and ask her to bring these things.")
    second_at = 500 + (len(first) + len(silence(0.7))) / 16
    second_end = second_at + len(second) / 16
    frame_ms = 1000.0 / fps

    def camera(i):
        t = i * frame_ms
        return talking(i) if 500 <= t < second_at - 700 or second_at + still_ms <= t < second_end else still(i)

    clock = ManualClock()
    models, sched = _models_on_a_scheduler(clock)
    await sched.start()
    s = DialogueSession(models, sched, clock, create("silence", {"silence_ms": 1000}), settings=settings)
    track = np.concatenate([silence(0.5), first, silence(0.7), second, silence(3.0)])
    start = None
    async for _ in _play(s, sched, clock, track, camera, frame_ms=frame_ms):
        if any(isinstance(e, AgentTurnStartEvent) for e in s.events()) and start is None:
            start = s.media_ms
    await sched.stop()
    return start, second_end


async def test_no_turn_ends_while_speech_over_still_lips_may_be_the_user_going_on():
    """``lips_hold_turn_ms``: the user's voice comes back after a pause before the lips' score sees
    the mouth move; the turn policy's wait must not run out in that gap. Without the hold the agent
    takes the pause over (it starts before the user's last word); with it, it answers after."""
    start, second_end = await _answer_after_pause(DialogueSettings())
    assert start is not None and start >= second_end
    start, second_end = await _answer_after_pause(DialogueSettings(lips_hold_turn_ms=None))
    assert start is not None and start < second_end


async def test_at_a_low_frame_rate_the_hold_lasts_as_many_frames_as_the_lip_score_needs():
    """``lips_hold_turn_frames``: at 5 fps the lip score sees a mouth move only frames after it
    starts (each frame 200 ms), so the resumed voice of the pause above is held back longer than
    600 ms and, with the hold in ms alone, the turn is taken over; held for 5 frames (1000 ms), the
    agent answers after the user's last word. (The room eval at 5 fps: 2 of 22 pauses, +626 and
    +670 ms after the resume, 3-4 frames of still lips each.)"""
    start, second_end = await _answer_after_pause(DialogueSettings(lips_hold_turn_frames=None), fps=5.0,
                                                  still_ms=500.0)
    assert start is not None and start < second_end
    start, second_end = await _answer_after_pause(DialogueSettings(), fps=5.0, still_ms=500.0)
    assert start is not None and start >= second_end
