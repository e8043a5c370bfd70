"""The TTS task: clause-by-clause chunks whose output positions add up to the audio, the first chunk
of a turn urgent, cancel dropping the unspoken text, several streams in one scheduler step; and on
the packaged hibari voice, the round trip: Whisper tiny.en transcribes the audio back to the text."""

from __future__ import annotations

import numpy as np
import pytest

from streamrt.clock import ManualClock
from streamrt.errors import ConfigError, InputError
from streamrt.scheduler import Scheduler, SchedulerSettings
from streamrt.stream_session import StepOutput, StreamSession
from streamrt.tasks.tts import TtsModel, TtsSettings
from streamrt.types import TextDelta
from tests.streamrt.scheduler.sched_helpers import Recorder, TimedCountingModel, advance_to

NO_WAIT = SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=None)
ANSWER = "Well, Paris is the capital of France, and it is big. It has a famous tower. Would you like to visit?"


class CharVoice:
    """A stand-in voice: 10 ms of a tone per character, so positions can be checked by hand."""

    name = "chars"
    sample_rate = 24000

    def __init__(self):
        self.spoken: list[str] = []

    def synthesize(self, text, *, speed, rng):
        self.spoken.append(text)
        n = int(len(text) * self.sample_rate / 100 / speed)
        return (0.1 * np.sin(np.arange(n) / 5.0)).astype(np.float32)

    def describe(self):
        return {"tts": self.name}


def _drain(stream, model):
    while stream.is_ready():
        model.step([stream])
    return stream.pop_result()


def test_units_tile_the_output_audio_and_say_the_whole_text():
    model = TtsModel(CharVoice())
    s = model.create_stream()
    pieces = [ANSWER[i:i + 7] for i in range(0, len(ANSWER), 7)]  # LLM-sized pieces
    units, audio = [], []
    for k, piece in enumerate(pieces):
        s.accept(TextDelta(piece, end_of_turn=k == len(pieces) - 1))
        r = _drain(s, model)
        units += r.committed
        if r.audio is not None:
            audio.append(r.audio)
    audio = np.concatenate(audio)
    assert [u.text for u in units] == ["Well,", "Paris is the capital of France,", "and it is big.",
                                       "It has a famous tower.", "Would you like to visit?"]
    assert " ".join(u.text for u in units) == ANSWER  # the units map back to the text
    assert units[0].start_ms == 0 and all(a.end_ms == b.start_ms for a, b in zip(units, units[1:]))
    assert units[-1].end_ms == pytest.approx(1000 * len(audio) / 24000)
    for u in units:  # 10 ms per character of its own text
        assert u.end_ms - u.start_ms == pytest.approx(10 * len(u.text), abs=0.05)
    assert s.is_done() and not s.is_ready()


def test_the_first_chunk_is_urgent_and_comes_before_the_sentence_ends():
    model = TtsModel(CharVoice(), TtsSettings(first_chunk_budget_ms=120, chunk_budget_ms=900))
    s = model.create_stream()
    s.accept(TextDelta("Paris is the"))
    assert not s.is_ready()  # "the" leans on the next word
    s.accept(TextDelta(" capital of"))
    assert s.is_ready() and s.urgency().budget_ms == 120 and s.urgency().priority == 1
    model.step([s])
    assert [u.text for u in s.pop_result().committed] == ["Paris is the capital"]
    assert not s.is_ready()  # "of ..." waits for its clause or sentence to end
    assert s.urgency().budget_ms == 900 and s.urgency().priority == 0
    s.accept(TextDelta(" France, and it is big. It"))
    model.step([s])
    model.step([s])
    assert [u.text for u in s.pop_result().committed] == ["of France,", "and it is big."]


def test_cancel_drops_the_unspoken_text_and_spoken_text_cannot_be_rewritten():
    voice = CharVoice()
    model = TtsModel(voice)
    s = model.create_stream()
    s.accept(TextDelta("First of all, this is said. This is not said yet. Nor this."))
    model.step([s])
    model.step([s])
    with pytest.raises(InputError, match="already answered"):
        s.accept(TextDelta("X", replace_from=3))
    s.accept(TextDelta("Changed.", replace_from=s.text.index("This is not")))  # not spoken yet: allowed
    s.cancel()
    assert not s.is_ready() and s.is_done()
    assert voice.spoken == ["First of all,", "this is said."]
    s2 = model.create_stream()
    s2.accept(TextDelta("Done.", end_of_turn=True))
    with pytest.raises(InputError, match="new stream"):
        s2.accept(TextDelta(" More."))


def test_bad_options_name_the_setting():
    model = TtsModel(CharVoice())
    with pytest.raises(ConfigError, match="speed"):
        model.create_stream({"speed": 5.0})
    with pytest.raises(ConfigError, match="known: speed, seed"):
        model.create_stream({"pitch": 1})
    with pytest.raises(ConfigError, match="first_chunk_budget_ms"):
        TtsSettings(first_chunk_budget_ms=0)


async def test_through_the_scheduler_streams_share_a_step_and_cancel_ends_one():
    clock = ManualClock()
    asr = TimedCountingModel(clock, fixed_s=0.02)
    voice = CharVoice()
    tts = TtsModel(voice)
    sched = Scheduler(asr, clock=clock, settings=NO_WAIT)
    sched.add_model(tts, name="tts")
    rec = Recorder()
    a = StreamSession(tts.create_stream(), clock, session_id="a")
    b = StreamSession(tts.create_stream(), clock, session_id="b")
    await sched.start()
    sched.add(a, rec, model=tts)
    sched.add(b, rec, model=tts)
    a.receive(TextDelta(ANSWER, end_of_turn=True))
    b.receive(TextDelta("One sentence here. Another one there. And a third one.", end_of_turn=True))
    a.receive_eof()
    sched.wake(a)
    sched.wake(b)
    await advance_to(sched, clock, 0.0)
    await sched.wait_progress()
    sched.cancel(b)  # the agent is interrupted after its first chunks
    await sched.wait_idle()
    st = sched.stats()
    await sched.stop()

    def said(sid):
        return [u.text for e in rec.events[sid] if isinstance(e, StepOutput) for u in e.result.committed]

    assert said("a") == ["Well,", "Paris is the capital of France,", "and it is big.", "It has a famous tower.",
                         "Would you like to visit?"]
    assert 1 <= len(said("b")) < 3 and "And a third one." not in voice.spoken
    assert tts.steps < tts.chunks  # a step spoke for both streams (their chunks one after another)
    assert rec.ended("a") and rec.ended("b") and st["models"]["tts"]["steps"] == tts.steps


@pytest.fixture(scope="module")
def tiny_bundle():
    from streamrt.models.whisper import load_whisper
    from streamrt.models.whisper.packages import locate

    try:
        locate("tiny.en")
    except Exception as exc:  # the pip package is not installed: skip, naming it
        pytest.skip(str(exc))
    return load_whisper("tiny.en")


@pytest.mark.model
async def test_hibari_round_trip_through_whisper_tiny_en(tiny_bundle):
    """The agent's text fed in LLM-sized pieces comes back from its audio through tiny.en (WER <= 10 %).
    One transcription: each costs a 30 s encoder window (seconds on a busy 2-core machine)."""
    import soxr

    from metrics.quality import wer
    from streamrt.models.tts import load_tts
    from streamrt.models.whisper.offline import transcribe_offline

    model = TtsModel(load_tts("hibari"), TtsSettings(seed=0))
    clock = ManualClock()
    sched = Scheduler(model, clock=clock, settings=NO_WAIT)
    rec = Recorder()
    speech = StreamSession(model.create_stream(), clock, session_id="agent")
    await sched.start()
    sched.add(speech, rec)
    text = ("The weather today looks sunny and warm, so bring some water with you. "
            "Have a nice walk in the park.")
    for k in range(0, len(text), 6):
        speech.receive(TextDelta(text[k:k + 6], end_of_turn=k + 6 >= len(text)))
        sched.wake(speech)
        await sched.wait_idle()
    await sched.stop()
    results = [e.result for e in rec.events["agent"] if isinstance(e, StepOutput)]
    audio = np.concatenate([r.audio for r in results if r.audio is not None])
    units = [u for r in results for u in r.committed]
    assert [u.text for u in units] == ["The weather today", "looks sunny and warm,",  # short first chunks
                                       "so bring some water with you.", "Have a nice walk in the park."]
    assert units[-1].end_ms == pytest.approx(1000 * len(audio) / 24000)
    heard = transcribe_offline(tiny_bundle, soxr.resample(audio, 24000, 16000).astype(np.float32))
    assert wer([heard], [" ".join(u.text for u in units)]) <= 10.0, heard
