"""The engine's typed inputs and stream protocols: text deltas that replace a suffix, a generic
session over a text stream, cancellation, and which protocol each stream kind satisfies."""

from __future__ import annotations

import numpy as np
import pytest

from streamrt.clock import ManualClock
from streamrt.engine import AudioModel, AudioStream, ModelStream, StreamingModel, Urgency
from streamrt.errors import InputError
from streamrt.session import Session
from streamrt.stream_session import StepOutput, StreamSession
from streamrt.testing import CountingModel, EchoTextModel
from streamrt.types import AudioChunk, EndEvent, ErrorEvent, TextDelta, VideoFrame, WithdrawReply


def test_text_delta_appends_or_replaces_the_suffix_from_a_position():
    assert TextDelta("lo").apply("hel") == "hello"
    assert TextDelta("p me", replace_from=3).apply("hello") == "help me"
    assert TextDelta("", replace_from=0).apply("hello") == ""
    with pytest.raises(InputError, match="past the end of the 5 characters"):
        TextDelta("x", replace_from=6).apply("hello")
    with pytest.raises(InputError, match="replace_from must be an int >= 0"):
        TextDelta("x", replace_from=-1)


def test_each_stream_kind_satisfies_its_protocols_only():
    audio, text = CountingModel(), EchoTextModel()
    assert isinstance(audio, AudioModel) and isinstance(audio.create_stream(), AudioStream)
    assert isinstance(text, StreamingModel) and not isinstance(text, AudioModel)
    s = text.create_stream()
    assert isinstance(s, ModelStream) and not isinstance(s, AudioStream)
    assert s.input_kinds == frozenset({TextDelta, WithdrawReply})


def _outputs(events):
    return [e.result for e in events if isinstance(e, StepOutput)]


def test_a_text_stream_answers_the_revised_turn_one_token_per_step():
    model = EchoTextModel()
    s = StreamSession(model.create_stream(), ManualClock())
    s.receive(TextDelta("turn the"))
    s.receive(TextDelta("lights on", replace_from=5))  # the ASR revised "the" -> "lights on"
    assert not s.ready()  # no turn ended yet: nothing to answer
    s.receive(TextDelta("", end_of_turn=True))
    assert s.stream.urgency() == Urgency(200.0, priority=1)  # waiting on its first token
    s.step(model)
    assert s.stream.urgency() == Urgency(1000.0, priority=0)
    s.run_until_blocked(model)
    s.receive_eof()
    events = s.events()
    words = [u.text for r in _outputs(events) for u in r.committed]
    assert words == ["turn", " lights", " on"] and model.batch_sizes == [1, 1, 1]  # text to append, as an LLM's
    assert [t for r in _outputs(events) for t in r.tokens] == [0, 1, 2]
    assert isinstance(events[-1], EndEvent) and s.ended


def test_bad_or_unsupported_input_becomes_an_error_event_and_keeps_the_text():
    model = EchoTextModel()
    s = StreamSession(model.create_stream(), ManualClock())
    s.receive(TextDelta("hello"))
    s.receive(TextDelta("x", replace_from=9))
    s.receive(AudioChunk(np.zeros(160, np.float32), 16000, 0.0))
    errors = [e for e in s.events() if isinstance(e, ErrorEvent)]
    assert [e.code for e in errors] == ["bad_text", "unsupported_input"]
    assert "takes TextDelta, WithdrawReply, not AudioChunk" in errors[1].message
    assert s.stream.text == "hello" and not s.closed


def test_cancel_during_a_step_frees_the_slot_at_the_step_boundary():
    model = EchoTextModel(slots=1)
    a, b = (StreamSession(model.create_stream(), ManualClock()) for _ in range(2))
    for s in (a, b):
        s.receive(TextDelta("one two three", end_of_turn=True))
    a.step(model)
    assert model.free_slots == []  # a holds the only slot mid-answer
    stream = a.begin_step()
    model.step([stream])
    a.cancel()  # asked while the step runs: takes effect when it completes
    assert not a.cancelled and model.free_slots == []
    a.complete_step(0.0)
    assert a.cancelled and a.ended and model.free_slots == [0]
    assert isinstance(a.events()[-1], EndEvent) and not a.ready()
    b.run_until_blocked(model)  # the freed slot serves the other conversation
    assert "".join(u.text for r in _outputs(b.events()) for u in r.committed) == "one two three"


def test_an_audio_session_cancels_too_and_keeps_what_it_committed():
    model = CountingModel()
    s = Session(model.create_stream(), ManualClock())
    s.receive_audio(np.zeros(16000 * 2, np.float32))
    s.run_until_blocked(model)
    committed = list(s.committed)
    s.cancel()
    assert s.ended and s.stream.is_done() and not s.stream.is_ready()
    end = s.events()[-1]
    assert isinstance(end, EndEvent) and list(end.units) == committed and committed
    s.receive_video(VideoFrame(np.zeros((2, 2, 3), np.uint8), 0.0))  # counted, dropped
    assert s.video_frames == 1
