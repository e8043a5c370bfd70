"""What the session tells about its end-of-turn decisions (real Whisper tiny.en, SmolLM2, silero
VAD; virtual time): each score the semantic policy gets is a ``user_turn_score`` event (the words
the LLM read, p, the silence it came at), and ``user_turn_end`` carries the p and the silence the
turn was answered on; a 1 s mid-turn pause's part is scored low, in the pause."""

from __future__ import annotations

import numpy as np
import pytest

from policies.turn_taking.registry import create
from streamrt.dialogue.events import UserTurnEndEvent, UserTurnScoreEvent
from streamrt.server.dialogue_protocol import event_message
from streamrt.testing import ToneTtsModel
from tests.streamrt.dialogue.dialogue_helpers import Dialogue, silence, speech

pytestmark = pytest.mark.model


def _words(text: str) -> list[str]:
    return [w.strip(".,?!").lower() for w in text.split()]


async def test_the_turn_end_carries_the_score_and_the_silence_it_was_answered_on():
    policy = create("semantic")
    d = Dialogue(policy, ToneTtsModel(word_ms=200), max_new_tokens=8)
    first, rest = speech("I would like to know"), speech("the capital of France.")
    await d.play(np.concatenate([silence(0.5), first, silence(1.0), rest, silence(2.5)]))
    run = await d.close()
    scores, (end,) = run.of(UserTurnScoreEvent), run.of(UserTurnEndEvent)
    assert _words(scores[0].text) == _words("I would like to know")  # in the pause
    assert scores[0].end_of_turn_p < policy.pause_p and 0 < scores[0].silence_ms < 1000
    last = scores[-1]
    assert _words(last.text) == _words(end.text) == _words("I would like to know the capital of France.")
    assert end.end_of_turn_p == last.end_of_turn_p
    # answered once the wait for that score ran out (a VAD frame is 32 ms; the ASR may hold it a frame)
    wait = policy.wait_ms(last.end_of_turn_p)
    assert last.silence_ms <= wait <= end.silence_ms <= wait + 100
    msg = event_message(last)  # a probability keeps its digits on the wire, times 0.1 ms
    assert msg["type"] == "user_turn_score" and msg["end_of_turn_p"] == float(f"{last.end_of_turn_p:.4g}")
    assert msg["silence_ms"] == round(last.silence_ms, 1)
