"""Turn-taking policies on hand-made views: the silence baseline answers after its threshold, the
semantic one after a short wait on a complete turn and a long one otherwise (so a 1 s mid-turn
pause is not taken over); while the agent speaks a backchannel is heard out and a long or wordy
interruption, or words that do not stand alone as a turn, make it yield; speech that begins just
after the agent took over (``continue_window_ms``) is the user going on with the turn and yields
once it has lasted ``continue_min_speech_ms``; the registry finds both and names bad options."""

from __future__ import annotations

import pytest

from policies.turn_taking import Listen, Speak, TurnView, Yield
from policies.turn_taking.registry import ENTRY_POINT_GROUP, available, create
from streamrt.errors import PolicyOptionError, UnknownPolicyError


def view(silence_ms=0.0, transcript="what is the capital of france", *, speaking=False, speech_ms=1500.0,
         agent=False, p=None) -> TurnView:
    return TurnView(10_000.0, speaking, speech_ms, 0.0 if speaking else silence_ms, transcript, agent, p)


def test_silence_answers_after_its_threshold_only_when_there_are_words():
    policy = create("silence", {"silence_ms": 800})
    assert policy.decide(view(799)) == Listen()
    assert policy.decide(view(800)) == Speak()
    assert policy.decide(view(5000, transcript="")) == Listen()
    assert policy.decide(view(speaking=True)) == Listen()


def test_semantic_waits_short_on_a_complete_turn_and_long_on_an_incomplete_one():
    policy = create("semantic")
    assert policy.decide(view(250, p=0.9)) == Speak()
    assert policy.decide(view(250, transcript="i would like to know", p=0.01)) == Listen()
    assert policy.decide(view(1000, transcript="i would like to know", p=0.01)) == Listen()  # a 1 s pause
    assert policy.decide(view(1600, transcript="i would like to know", p=0.01)) == Speak()
    assert policy.decide(view(1000, p=None)) == Listen()  # not scored yet: as incomplete
    assert type(policy).wants_end_of_turn_p and not type(create("silence")).wants_end_of_turn_p


@pytest.mark.parametrize("name", ["silence", "semantic"])
def test_a_turn_is_not_ended_while_the_users_lips_move(name):
    from dataclasses import replace

    policy = create(name)
    done = view(5000, p=0.9)
    assert policy.decide(done) == Speak() and done.lips == "unknown"  # no camera: as before
    assert policy.decide(replace(done, lips="still")) == Speak()
    assert policy.decide(replace(done, lips="active")) == Listen()  # silent, but the lips still move


@pytest.mark.parametrize("name", ["silence", "semantic"])
def test_backchannels_are_heard_out_and_interruptions_yield(name):
    policy = create(name)
    assert policy.decide(view(speaking=True, agent=True, speech_ms=400, transcript="okay", p=0.6)) == Listen()
    assert policy.decide(view(speaking=True, agent=True, speech_ms=300, transcript="mm-hm", p=None)) == Listen()
    assert policy.decide(view(speaking=True, agent=True, speech_ms=1000, transcript="mm-hm")) == Listen()
    assert policy.decide(view(speaking=True, agent=True, speech_ms=1200, transcript="")) == Yield()
    assert policy.decide(view(speaking=True, agent=True, speech_ms=400, transcript="no wait stop")) == Yield()
    assert policy.decide(view(200, agent=True, speech_ms=400, transcript="okay")) == Listen()  # it ended


def test_semantic_yields_to_words_that_claim_the_floor_when_the_user_pauses():
    policy = create("semantic", {"floor_p": 0.05})
    assert policy.decide(view(100, agent=True, speech_ms=400, transcript="but what", p=0.01)) == Yield()
    assert policy.decide(view(100, agent=True, speech_ms=400, transcript="right", p=0.4)) == Listen()
    assert policy.decide(view(speaking=True, agent=True, speech_ms=400, transcript="but what", p=0.01)) == Listen()


def test_registry_lists_both_and_names_what_is_wrong():
    assert {"silence", "semantic"} <= set(available()) and ENTRY_POINT_GROUP == "streamrt.turn_policies"
    with pytest.raises(UnknownPolicyError, match="silence"):
        create("nope")
    with pytest.raises(PolicyOptionError, match="silence_ms"):
        create("silence", {"silence_ms": -1})
    with pytest.raises(PolicyOptionError, match="semantic"):
        create("semantic", {"bogus": 1})
    assert create("silence").describe() == {"name": "silence", "silence_ms": 1200.0, "min_interrupt_ms": 1200.0,
                                            "interrupt_words": 3, "continue_window_ms": 700.0,
                                            "continue_min_speech_ms": 300.0}
    with pytest.raises(PolicyOptionError, match="continue_window_ms"):
        create("semantic", {"continue_window_ms": -5})


def test_semantic_waits_log_linearly_in_p_between_pause_p_and_complete_p():
    """A turn scored between ``pause_p`` and ``complete_p`` waits in between, by the log of p: at
    the geometric mean of the two, half way (SmolLM2-135M scores whole turns from ~0.01 and the
    parts before a mid-turn pause mostly below 0.005: a two-level wait held every whole turn under
    0.2 for the full 1.3 s). Below pause_p, and until scored, the long wait; pause_p None: two levels."""
    policy = create("semantic", {"complete_p": 0.2, "pause_p": 0.01, "short_wait_ms": 250, "long_wait_ms": 1300})
    mid = (0.01 * 0.2) ** 0.5
    assert policy.wait_ms(mid) == pytest.approx(775.0)
    assert policy.wait_ms(0.2) == 250.0 and policy.wait_ms(0.01) == 1300.0 and policy.wait_ms(0.001) == 1300.0
    assert policy.wait_ms(None) == 1300.0
    assert policy.decide(view(770, p=mid)) == Listen() and policy.decide(view(780, p=mid)) == Speak()
    assert policy.wait_ms(0.1) < policy.wait_ms(0.05) < policy.wait_ms(0.02)  # more likely complete: sooner
    two_levels = create("semantic", {"complete_p": 0.2, "pause_p": None})
    assert two_levels.wait_ms(0.19) == two_levels.long_wait_ms
    for bad in (0.2, 0.5, 0.0, -1):
        with pytest.raises(PolicyOptionError, match=r"pause_p must be > 0 and < complete_p \(0.2\)"):
            create("semantic", {"complete_p": 0.2, "pause_p": bad})


def test_semantic_holds_a_one_second_pause_and_answers_the_whole_turn_after_its_short_wait():
    """Virtual time, one view per 32 ms VAD frame: "I want to book a table for" [1 s] "four people
    on Friday." The first part is scored (400 ms into the pause, as the ASR's last words come) at
    the LLM's probability of a sentence end there (~0.0004); the whole turn at 0.6. The agent
    must not speak in the pause, and answers the whole turn once ``short_wait_ms`` of silence passed."""
    policy = create("semantic")
    frame, actions = 32.0, []
    script = [("I want to book a table for", 0.0004, 1000.0), ("I want to book a table for four people on Friday.", 0.6, 1000.0)]
    t = 0.0
    for text, p, silence in script:
        for k in range(int(silence // frame)):
            scored = k * frame >= 400.0
            actions.append((t, policy.decide(TurnView(t, False, 1500.0, k * frame, text, False, p if scored else None))))
            t += frame
        t += 1500.0  # the next part is spoken
    speaks = [at for at, a in actions if a == Speak()]
    assert speaks and speaks[0] > 1000.0 + 1500.0  # nothing in the first part's pause
    first = speaks[0] - (1000.0 + 1500.0)  # into the second silence
    assert 400.0 <= first < 400.0 + frame  # as soon as the complete turn's score came (after 250 ms)


def over_answer(audible_ms, speech_ms=300.0, *, answered_after_ms=400.0, speaking=True) -> TurnView:
    """The user speaks (``speech_ms`` so far) over an agent turn audible for ``audible_ms`` (None: its
    audio has not started) that answered the user after ``answered_after_ms`` of silence."""
    return TurnView(10_000.0, speaking, speech_ms, 0.0 if speaking else 200.0, "the moon", True, 0.001,
                    agent_audible_ms=audible_ms, answered_after_ms=answered_after_ms)


@pytest.mark.parametrize("name", ["silence", "semantic"])
def test_speech_just_after_the_agent_took_over_is_the_user_going_on_and_yields(name):
    """Full-Duplex-Bench's pause handling: the user who goes on within moments of the agent's start
    had not finished; the agent yields once the speech has lasted continue_min_speech_ms (300 ms:
    the agent's audio is paused from the guard's onset, so its echo has stopped by then), not after
    min_interrupt_ms / interrupt_words, and the turn continues."""
    policy = create(name)
    go_on = Yield(user_continues=True)
    assert policy.decide(over_answer(700.0)) == go_on  # began 400 ms into the agent's voice
    assert policy.decide(over_answer(700.0 + 300.0)) == go_on  # began 700 ms in: the window's edge
    assert policy.decide(over_answer(None)) == go_on  # began before the agent's audio came out
    assert policy.decide(over_answer(None, answered_after_ms=3000.0)) == go_on  # whatever the pause
    # shorter so far: not yet (the agent's echo stops within this once its audio is paused)
    assert policy.decide(over_answer(500.0, 96.0)) == Listen()
    assert policy.decide(over_answer(500.0, 299.0)) == Listen()
    # later in the agent's turn a short run is a backchannel, a long one an interruption (a new turn)
    assert policy.decide(over_answer(701.0 + 300.0)) == Listen()
    assert policy.decide(over_answer(1000.0 + 1200.0, 1200.0)) == Yield()
    # no user turn answered (a greeting), the user silent, or the rule off: as before
    assert policy.decide(over_answer(500.0, answered_after_ms=None)) == Listen()
    assert policy.decide(over_answer(500.0, speaking=False)) == Listen()
    assert create(name, {"continue_window_ms": None}).decide(over_answer(700.0)) == Listen()
    assert create(name, {"continue_min_speech_ms": None}).decide(over_answer(500.0, 96.0)) == go_on
