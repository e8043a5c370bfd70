"""Session (sans-I/O core): feeding, stamping of delays, limits, and the never-raise feed path."""

import numpy as np
import pytest

from streamrt.clock import ManualClock
from streamrt.session import Session, SessionLimits
from streamrt.testing import CountingModel
from streamrt.types import CommitEvent, EndEvent, ErrorEvent, PartialEvent


class TimedModel(CountingModel):
    """Each step costs `step_s` seconds on the session's manual clock."""

    def __init__(self, clock: ManualClock, step_s: float, **kw):
        super().__init__(**kw)
        self.clock, self.step_s = clock, step_s

    def step(self, streams):
        self.clock.advance(self.step_s)
        super().step(streams)


def feed(session, model, seconds, chunk_s=0.1, rate=16000):
    for _ in range(round(seconds / chunk_s)):
        session.receive_audio(np.zeros(int(chunk_s * rate), np.float32))
        session.run_until_blocked(model)


def test_units_carry_media_delay_and_elapsed_with_compute():
    # SimulEval: elapsed = media consumed at emission + compute spent on the stream so far
    clock = ManualClock()
    model = TimedModel(clock, step_s=0.05)
    s = Session(model.create_stream(), clock)
    feed(s, model, 2.0)
    s.receive_eof()
    s.run_until_blocked(model)
    units = s.committed
    assert [u.text for u in units] == ["w0", "w1", "w2", "w3"]
    # w0 ends at 500 ms; committed once 500 + hold 300 ms consumed -> first 200 ms step boundary: 800
    assert units[0].media_delay_ms == 800.0
    steps_before_w0 = 4  # steps at 200, 400, 600, 800 ms
    assert units[0].elapsed_ms == pytest.approx(800.0 + steps_before_w0 * 50.0)
    for u in units:
        assert u.elapsed_ms >= u.media_delay_ms >= u.end_ms
    ev = s.events()
    assert isinstance(ev[-1], EndEvent) and ev[-1].units == tuple(units)
    assert ev[-1].summary["units"] == 4 and ev[-1].summary["source_ms"] == 2000.0


def test_end_event_only_after_everything_committed_and_only_once():
    clock = ManualClock()
    model = CountingModel()
    s = Session(model.create_stream(), clock)
    feed(s, model, 1.3)
    assert not any(isinstance(e, EndEvent) for e in s.events())
    s.receive_eof()
    s.receive_eof()
    s.run_until_blocked(model)
    ends = [e for e in s.events() if isinstance(e, EndEvent)]
    assert len(ends) == 1
    assert [u.text for u in ends[0].units] == ["w0", "w1", "w2"]  # the part-word at 1.0-1.3 s too
    assert s.ended and not s.ready()


def test_partial_events_only_when_text_changes():
    clock = ManualClock()
    model = CountingModel()
    s = Session(model.create_stream(), clock)
    feed(s, model, 1.0)
    partials = [e.text for e in s.events() if isinstance(e, PartialEvent)]
    assert partials and all(a != b for a, b in zip(partials, partials[1:]))


def test_buffer_limit_refuses_chunk_reports_numbers_and_keeps_session():
    clock = ManualClock()
    model = CountingModel()
    s = Session(model.create_stream(), clock, limits=SessionLimits(max_buffered_audio_s=1.0))
    s.receive_audio(np.zeros(16000, np.float32))  # exactly at the limit: accepted
    s.receive_audio(np.zeros(1600, np.float32))  # 1.1 s buffered: refused
    errors = [e for e in s.events() if isinstance(e, ErrorEvent)]
    assert len(errors) == 1 and errors[0].code == "buffer_full" and not errors[0].fatal
    assert "1.1 s" in errors[0].message and "1 s" in errors[0].message and "max_buffered_audio_s" in errors[0].message
    assert s.stream.received_ms == 1000.0
    s.run_until_blocked(model)
    s.receive_audio(np.zeros(1600, np.float32))  # room again after the model caught up
    assert not [e for e in s.events() if isinstance(e, ErrorEvent)]


def test_stream_length_limit_is_fatal_but_keeps_committed_units():
    clock = ManualClock()
    model = CountingModel()
    s = Session(model.create_stream(), clock, limits=SessionLimits(max_stream_s=1.0))
    feed(s, model, 1.0)
    s.receive_audio(np.zeros(1600, np.float32))
    s.run_until_blocked(model)
    ev = s.events()
    err = [e for e in ev if isinstance(e, ErrorEvent)]
    assert err and err[0].fatal and err[0].code == "limit_exceeded"
    end = [e for e in ev if isinstance(e, EndEvent)]
    assert end and [u.text for u in end[0].units] == ["w0", "w1"]


def test_bad_pcm_becomes_error_event_not_exception():
    clock = ManualClock()
    model = CountingModel()
    s = Session(model.create_stream(), clock)
    s.receive_pcm(b"\x00\x01\x02", "pcm_s16le")  # 3 bytes: half a sample
    s.receive_pcm(np.full(4, np.nan, "<f4").tobytes(), "pcm_f32le")
    codes = [e.code for e in s.events()]
    assert codes == ["partial_frame", "bad_samples"]
    s.receive_pcm(np.zeros(3200, "<i2").tobytes(), "pcm_s16le")
    assert s.stream.received_ms == 200.0


def test_audio_after_eof_is_reported():
    clock = ManualClock()
    model = CountingModel()
    s = Session(model.create_stream(), clock)
    s.receive_eof()
    s.receive_audio(np.zeros(160, np.float32))
    assert [e.code for e in s.events() if isinstance(e, ErrorEvent)] == ["session_closed"]


def test_resamples_and_downmixes_at_the_edge():
    clock = ManualClock()
    model = CountingModel()
    s = Session(model.create_stream(), clock, input_sample_rate=48000, input_channels=2)
    stereo = np.zeros((48000, 2), np.float32)
    for i in range(10):
        s.receive_audio(stereo[i * 4800:(i + 1) * 4800])
    s.receive_eof()
    assert s.stream.received_ms == pytest.approx(1000.0, abs=1.0)
    s.receive_audio(np.zeros((10, 3), np.float32))
    assert any(isinstance(e, ErrorEvent) for e in s.events())


def test_commit_events_concatenate_to_end_units():
    clock = ManualClock()
    model = CountingModel()
    s = Session(model.create_stream(), clock)
    feed(s, model, 3.0)
    s.receive_eof()
    s.run_until_blocked(model)
    ev = s.events()
    commits = [u for e in ev if isinstance(e, CommitEvent) for u in e.units]
    assert tuple(commits) == ev[-1].units


def test_input_during_a_step_is_staged_until_the_step_completes():
    # the scheduler steps streams in a worker thread while the loop keeps receiving audio
    clock = ManualClock()
    model = CountingModel()
    s = Session(model.create_stream(), clock, limits=SessionLimits(max_buffered_audio_s=0.5))
    s.receive_audio(np.zeros(3200, np.float32))
    stream = s.begin_step()
    assert not s.ready()
    s.receive_audio(np.zeros(3200, np.float32))
    s.receive_audio(np.zeros(4800, np.float32))  # 0.2 + 0.2 staged + 0.3 > 0.5 s: refused
    assert [e.code for e in s.events() if isinstance(e, ErrorEvent)] == ["buffer_full"]
    s.receive_eof()
    assert stream.received_ms == 200.0 and not stream._finished  # untouched while stepping
    model.step([stream])
    s.complete_step(0.01)
    assert stream.received_ms == 400.0 and stream._finished
    s.run_until_blocked(model)
    assert s.ended and [u.text for u in s.committed] == ["w0"]


def test_eof_with_nothing_left_to_step_ends_at_once():
    clock = ManualClock()
    model = CountingModel()
    s = Session(model.create_stream(), clock)
    s.receive_eof()
    assert s.ended and isinstance(s.events()[-1], EndEvent)


def test_failed_step_releases_staged_input():
    from streamrt.errors import StreamrtError

    clock = ManualClock()
    model = CountingModel()
    s = Session(model.create_stream(), clock)
    s.begin_step()
    s.receive_audio(np.zeros(1600, np.float32))
    s.fail(StreamrtError("model step failed", code="model_error"))
    assert s.stream.received_ms == 100.0 and s.closed


def test_audio_that_is_not_numbers_or_not_finite_becomes_an_error_event():
    clock = ManualClock()
    model = CountingModel()
    s = Session(model.create_stream(), clock, input_channels=2)
    s.receive_audio(["a", "b"])
    s.receive_audio(np.zeros(160, np.float32))  # 1-D for a 2-channel session
    s.receive_audio(np.full((160, 2), np.inf, np.float32))
    assert [e.code for e in s.events()] == ["bad_samples", "bad_channels", "bad_samples"]
    assert s.stream.received_ms == 0.0


def test_video_frames_are_staged_while_a_step_runs():
    from streamrt.types import AudioChunk, VideoFrame

    class VideoStream(CountingModel().create_stream().__class__):
        input_kinds = frozenset({AudioChunk, VideoFrame})

        def __init__(self, model):
            super().__init__(model)
            self.frames = []

        def accept(self, item):
            if isinstance(item, VideoFrame):
                self.frames.append(item.time_ms)
            else:
                super().accept(item)

    clock = ManualClock()
    model = CountingModel()
    stream = VideoStream(model)
    s = Session(stream, clock)
    s.receive_video(VideoFrame(np.zeros((2, 2, 3), np.uint8), 0.0))
    s.begin_step()
    s.receive_video(VideoFrame(np.zeros((2, 2, 3), np.uint8), 40.0))
    assert stream.frames == [0.0]
    s.complete_step(0.0)
    assert stream.frames == [0.0, 40.0] and s.video_frames == 2
