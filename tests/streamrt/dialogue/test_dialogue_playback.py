"""AgentTurn's pause and resume (pure, no models): a pause stops the modelled playback where it is
and rewinds to the start of the first word not heard whole, across units; a report sent before the
pause reached the client is ignored; once all the turn's audio is out there is nothing to pause
(the client plays out its lead); after a resume the audio comes again from the rewound position."""

from __future__ import annotations

import numpy as np
import pytest

from streamrt.dialogue.playback import AgentTurn
from streamrt.engine import UnitDraft

RATE = 1000  # one sample a millisecond


def _turn() -> AgentTurn:
    """Two units: "a b c d" over 0-400 ms, "e f" over 500-700 ms (100 ms of silence between)."""
    t = AgentTurn(1, RATE, text="a b c d. e f")
    t.units = [UnitDraft("a b c d.", 0.0, 400.0, 0.0), UnitDraft("e f", 500.0, 700.0, 0.0)]
    t.add_audio(np.arange(700, dtype=np.float32))
    return t


def _play(t: AgentTurn, until_s: float, lead_ms: float = 200.0) -> list[tuple[float, np.ndarray]]:
    """Release what is due every 10 ms of the clock up to ``until_s``."""
    out = []
    now = 0.0 if t._played_at is None else t._played_at
    while now <= until_s + 1e-9:
        t.advance(now)
        while (due := t.take(lead_ms)) is not None:
            t.started = True
            out.append(due)
        now = round(now + 0.01, 6)
    return out


def test_a_pause_rewinds_to_the_word_being_heard_and_the_resume_sends_the_rest_from_there():
    t = _turn()
    _play(t, 0.25)  # played 250 ms, released 450
    assert t.pause(0.25) == pytest.approx(250.0) and t.heard_text() == "a b"
    assert t.released_ms == 200.0 and t.played_ms == 200.0  # "c" (200-300 ms) is heard again, whole
    assert t.take(200.0) is None  # nothing while paused
    t.report(400.0, 0.3)  # stale: sent before the client stopped
    assert t.played_ms == 200.0
    assert t.resume() == 200.0
    t.advance(1.0)  # the pause's time is not playback
    again = _play(t, 1.6)
    assert again[0][0] == 200.0
    assert np.array_equal(np.concatenate([c for _, c in again]), np.arange(200, 700, dtype=np.float32))


def test_in_a_pause_between_units_or_in_the_second_the_rewind_stays_on_its_word_boundary():
    t = _turn()
    _play(t, 0.45)  # in the silence between the units: every word of the first was heard
    assert t.pause(0.45) == pytest.approx(450.0) and t.released_ms == 450.0 and t.heard_text() == "a b c d."
    t = _turn()
    _play(t, 0.65)  # half of "f"
    t.pause(0.65)
    assert t.released_ms == 600.0 and t.heard_text() == "a b c d. e"


def test_nothing_to_pause_before_the_first_audio_or_once_all_of_it_is_out():
    t = _turn()
    assert t.pause(0.0) is None and t.paused and t.resume() is None
    _play(t, 0.55)  # all 700 ms released by 0.5 s: the client plays out the rest
    assert t.released == t.made
    t.ended = True
    assert t.pause(0.55) is None and t.released == t.made


def test_each_resume_of_a_turn_doubles_the_speech_run_that_pauses_it():
    """The echo backoff: speech frames over the playing agent start a run after echo_min_speech_ms
    (96 ms: 3 frames), 192 ms after one resume of that turn, 384 ms after two."""
    from streamrt.dialogue.settings import DialogueSettings
    from streamrt.dialogue.speech import UserSpeech

    t = _turn()
    _play(t, 0.1)

    def frames_to_start() -> int:
        speech = UserSpeech(DialogueSettings(echo_level_ratio=None), 32.0, 16000)  # the run alone
        speech.add_audio(np.full(16000, 0.5, np.float32))
        return next(k for k in range(1, 40) if speech.frame(1.0, t))

    assert frames_to_start() == 3
    t.pause(0.1)
    t.resume()
    assert frames_to_start() == 6
    t.pause(0.1)
    t.resume()
    assert frames_to_start() == 12
