"""``Finalize`` on the packaged tiny.en with the default (balanced) preset, on flite speech: the
words committed at once are exactly those the end of input commits for the same audio, and the
next turn's words, after it on the same stream, are transcribed as a fresh stream would."""

import numpy as np
import pytest

from streamrt.clock import ManualClock
from streamrt.session import Session
from streamrt.types import Finalize
from tests.streamrt.dialogue.dialogue_helpers import asr_model, silence, speech

pytestmark = pytest.mark.model

FRAME = 512  # the dialogue's VAD frame: the gate hands the ASR audio in these


def _feed(session, model, audio):
    for i in range(0, len(audio), FRAME):
        session.receive_audio(audio[i:i + FRAME])
        session.run_until_blocked(model)


def _units(units):
    return [(u.text, u.start_ms, u.end_ms, u.media_delay_ms) for u in units]


def _words(units):
    return [u.text.strip(".,?!").lower() for u in units]


def test_finalize_commits_the_end_of_inputs_words_and_the_next_turn_continues():
    model = asr_model()
    first = np.concatenate([speech("How long should I bake a potato in the oven?"), silence(0.19)])
    second = np.concatenate([speech("I have some chicken and vegetables in the fridge."), silence(0.19)])
    end_ms = 1000.0 * len(first) / 16000

    reference = Session(model.create_stream(), ManualClock())
    _feed(reference, model, first)
    reference.receive_eof()
    reference.run_until_blocked(model)
    assert _words(reference.committed) == "how long should i bake a potato in the oven".split()

    session = Session(model.create_stream(), ManualClock())
    _feed(session, model, first)
    assert len(session.committed) < len(reference.committed)  # the last words wait for more audio
    session.receive(Finalize())
    session.receive_audio(second[:4000])  # arrives before the step: the next segment's
    session.run_until_blocked(model)
    assert _units(session.committed) == _units(reference.committed)  # words and times, exactly
    assert session.stream.consumed_ms == pytest.approx(end_ms) and not session.ended

    _feed(session, model, second[4000:])
    session.receive(Finalize())
    session.run_until_blocked(model)
    later = session.committed[len(reference.committed):]
    assert _words(later) == "i have some chicken and vegetables in the fridge".split()
    assert later[0].start_ms >= end_ms and session.stream.stats["segments"] == 2
