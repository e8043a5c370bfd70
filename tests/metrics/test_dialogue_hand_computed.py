"""Dialogue turn-taking metrics against hand-computed values (times in ms).

The dialogue of ``_script()``, step by step:

- turn A: voice 0-2000 with a pause 800-1800; last ASR words 2300 (a partial; the empty partial at
  2350 and the commit the decision makes at 2400 are not ASR words), decision 2400, text 2450; agent turn 1
  audio released at 2600 (200 ms), 2700 (200 ms), 2900 (1000 ms) -> plays 2600-2800, 2800-3000,
  3000-4000. Onset 600 = ASR 300 + endpoint 100 + LLM 50 + TTS 150.
- backchannel 3000-3300 inside turn 1's playback; turn 1 is not interrupted.
- turn B: voice 4500-6000; commit 6050, text 6100 (no decision event); agent turn 2 plays from
  6400 (2000 ms), interrupted at 7350 -> onset 400; ASR 50, TTS 300.
- backchannel 7000-7300 inside turn 2, which is interrupted at 7350 with no other user speech
  since 7000: a false barge-in.
- turn C: voice 9000-11000, pause 9500-10500; agent turn 3 starts at 10000 inside the pause (a
  takeover), interrupted at 10600; agent turn 4 (text 11500) plays from 11700 (3000 ms) -> onset
  700 (turn 3 started before C's last resume at 10500, so it is not the answer); TTS 200.
- interruption D: voice 12500-13500 during turn 4, interrupted at 12700 -> reaction 200; turn 5
  plays 14000-14600 -> onset 500.
- interruption E: voice 14300-15000 during turn 5, never interrupted -> reaction 14600-14300 =
  300, missed; no agent turn after it -> unanswered.
- backchannel at 16000 while the agent is silent: not counted.
"""

from __future__ import annotations

import math

import pytest

from metrics.dialogue import (
    DialogueLog,
    TimedEvent,
    UserSpeech,
    agent_turns,
    dialogue_scores,
    measure,
    percentile,
    read_dialogue_logs,
    write_dialogue_logs,
)
from streamrt.errors import LogFormatError


def _audio(t, turn, ms):
    return TimedEvent(t, "agent_audio", turn, ms)


def _script() -> DialogueLog:
    user = [
        UserSpeech("turn", 0, 2000, ((800, 1800),), "A"),
        UserSpeech("backchannel", 3000, 3300, (), "mm-hm"),
        UserSpeech("turn", 4500, 6000, (), "B"),
        UserSpeech("backchannel", 7000, 7300, (), "okay"),
        UserSpeech("turn", 9000, 11000, ((9500, 10500),), "C"),
        UserSpeech("interruption", 12500, 13500, (), "D"),
        UserSpeech("interruption", 14300, 15000, (), "E"),
        UserSpeech("backchannel", 16000, 16300, (), "right"),
    ]
    events = [
        TimedEvent(2300, "user_partial", text="a"), TimedEvent(2350, "user_partial", text=""),
        TimedEvent(2400, "user_commit", text="a"), TimedEvent(2400, "user_turn_end", text="a"),
        TimedEvent(2450, "agent_text", 1, text="one"), TimedEvent(2600, "agent_turn_start", 1),
        _audio(2600, 1, 200), _audio(2700, 1, 200), _audio(2900, 1, 1000),
        TimedEvent(3100, "agent_turn_end", 1, text="one"),
        TimedEvent(6050, "user_commit", text="b"), TimedEvent(6100, "agent_text", 2, text="two"),
        _audio(6400, 2, 2000), TimedEvent(7350, "interrupted", 2, text="t"),
        _audio(10000, 3, 300), TimedEvent(10600, "interrupted", 3),
        TimedEvent(11500, "agent_text", 4, text="four"), _audio(11700, 4, 3000),
        TimedEvent(12700, "interrupted", 4),
        _audio(14000, 5, 600),
    ]
    return DialogueLog("d1", tuple(user), tuple(events))


def test_playback_chunks_queue_behind_each_other_and_stop_at_the_interruption():
    turns = {t.turn: t for t in agent_turns(_script().events)}
    assert (turns[1].start_ms, turns[1].stop_ms, turns[1].interrupted_ms) == (2600, 4000, None)
    assert (turns[2].start_ms, turns[2].stop_ms) == (6400, 7350)
    # audio released after the interruption is never heard
    extra = agent_turns([_audio(0, 1, 500), TimedEvent(100, "interrupted", 1), _audio(200, 1, 500)])
    assert extra[0].stop_ms == 100
    # an underrun: the second chunk comes after the first finished playing
    assert agent_turns([_audio(0, 1, 100), _audio(300, 1, 100)])[0].stop_ms == 400


def test_each_item_of_the_hand_computed_dialogue():
    m = measure(_script())
    assert m.response_onset_ms == [600, 400, 700, 500]
    assert m.unanswered == 1
    assert m.barge_in_ms == [200, 300] and m.barge_in_missed == 1
    assert (m.pauses, m.pause_takeovers) == (2, 1)
    assert (m.backchannels, m.false_barge_ins) == (2, 1)
    assert m.stages == {"asr_final": [300, 50], "endpoint": [100], "llm_ttft": [50],
                        "tts_first_chunk": [150, 300, 200]}


def test_stages_add_up_to_the_response_onset_when_all_events_are_there():
    m = measure(_script())
    assert sum(m.stages[s][0] for s in ("asr_final", "endpoint", "llm_ttft", "tts_first_chunk")) \
        == m.response_onset_ms[0]


def test_corpus_scores_pool_items_and_take_nearest_rank_percentiles():
    s = dialogue_scores([_script()])
    assert s["turns"] == 5 and s["unanswered"] == 1
    assert (s["response_onset_p50_ms"], s["response_onset_p90_ms"]) == (500, 700)
    assert (s["interruptions"], s["barge_in_missed"]) == (2, 1)
    assert (s["barge_in_p50_ms"], s["barge_in_p90_ms"]) == (200, 300)
    assert s["pause_takeover_rate"] == 0.5 and s["false_barge_in_rate"] == 0.5
    assert (s["tts_first_chunk_p50_ms"], s["tts_first_chunk_p90_ms"]) == (200, 300)
    assert (s["asr_final_p50_ms"], s["asr_final_p90_ms"]) == (50, 300)
    two = dialogue_scores([_script(), _script()])
    assert two["turns"] == 10 and two["response_onset_p90_ms"] == 700


def test_a_backchannel_followed_by_an_interruption_is_not_a_false_barge_in():
    user = [UserSpeech("turn", 0, 1000), UserSpeech("backchannel", 1500, 1800),
            UserSpeech("interruption", 1900, 2500)]
    events = [_audio(1200, 1, 3000), TimedEvent(2100, "interrupted", 1)]
    m = measure(DialogueLog("d", tuple(user), tuple(events)))
    assert (m.backchannels, m.false_barge_ins) == (1, 0)
    assert m.barge_in_ms == [200] and m.barge_in_missed == 0


def test_an_agent_that_starts_before_the_user_finishes_has_a_negative_onset():
    m = measure(DialogueLog("d", (UserSpeech("turn", 0, 1000),), (_audio(900, 1, 500),)))
    assert m.response_onset_ms == [-100]


def test_empty_figures_are_nan():
    s = dialogue_scores([DialogueLog("d", (UserSpeech("turn", 0, 1000),), ())])
    assert s["unanswered"] == 1 and math.isnan(s["response_onset_p50_ms"])
    assert math.isnan(s["pause_takeover_rate"]) and math.isnan(s["false_barge_in_rate"])


def test_percentile_is_nearest_rank():
    assert percentile([3, 1, 2], 50) == 2
    assert percentile([1, 2], 50) == 1
    assert percentile(list(range(1, 11)), 90) == 9
    assert percentile([5], 90) == 5
    with pytest.raises(ValueError, match="in \\(0, 100\\]"):
        percentile([1], 0)


def test_the_log_round_trips_and_a_bad_line_names_file_line_and_problem(tmp_path):
    path = tmp_path / "dialogues.jsonl"
    write_dialogue_logs(path, [_script()])
    assert dialogue_scores(read_dialogue_logs(path)) == dialogue_scores([_script()])
    path.write_text(path.read_text() + '{"id": "x", "user": [{"kind": "song", "onset_ms": 0, "offset_ms": 1}],'
                    ' "events": []}\n')
    with pytest.raises(LogFormatError, match=r"dialogues.jsonl:2: .*kind must be one of turn, backchannel, "
                                             r"interruption, background, got 'song'"):
        read_dialogue_logs(path)
    path.write_text('{"id": "x", "user": []}\n')
    with pytest.raises(LogFormatError, match=r":1: missing key 'events'"):
        read_dialogue_logs(path)


def test_a_session_that_pauses_its_audio_at_once_is_credited_with_the_pause():
    # chunks play 1000-1200 and 1200-1400; the user barges in at 1300; the session releases
    # nothing more (paused) and sends `interrupted` only at 1900: the audio stopped at 1400
    user = (UserSpeech("turn", 0, 800), UserSpeech("interruption", 1300, 2000))
    events = (_audio(1000, 1, 200), _audio(1100, 1, 200), TimedEvent(1900, "interrupted", 1))
    m = measure(DialogueLog("d", user, events))
    assert m.barge_in_ms == [100] and m.barge_in_missed == 0


def test_an_agent_turn_stopped_by_the_users_own_speech_is_not_the_answer():
    # the agent starts at 1500 in the user's second stretch (1400-3000) and is interrupted at 1800:
    # a takeover of the pause, not the answer; the answer starts at 3500
    user = (UserSpeech("turn", 0, 3000, ((400, 1400),)),)
    events = (_audio(1500, 1, 1000), TimedEvent(1800, "interrupted", 1), _audio(3500, 2, 1000))
    m = measure(DialogueLog("d", user, events))
    assert m.response_onset_ms == [500] and (m.pauses, m.pause_takeovers) == (1, 1)
    # one that talks over the end of the turn and goes on is the answer, early
    m = measure(DialogueLog("d", user, (_audio(2800, 1, 1000),)))
    assert m.response_onset_ms == [-200] and m.pause_takeovers == 1


def test_speech_that_is_not_the_users_background_and_echo_barge_ins():
    """Background speech 1500-3000 (a TV) over agent turn 1 (plays from 1200), which stops at 2500
    with no user speech since 1500: a barge-in on background speech. Agent turn 2 (6000) answers
    no user turn (unprompted) and is interrupted at 6500 with no speech at all since it began:
    an echo barge-in. Background speech expects no answer; the whole corpus counts its rates."""
    user = [UserSpeech("turn", 0, 1000), UserSpeech("background", 1500, 3000, (), "the weather")]
    events = [_audio(1200, 1, 4000), TimedEvent(2500, "interrupted", 1),
              _audio(6000, 2, 1000), TimedEvent(6500, "interrupted", 2)]
    log = DialogueLog("d", tuple(user), tuple(events))
    m = measure(log)
    assert m.response_onset_ms == [200] and m.unanswered == 0 and m.barge_in_ms == []
    assert (m.background, m.background_barge_ins) == (1, 1)
    assert (m.agent_turns, m.echo_barge_ins, m.unprompted_turns) == (2, 1, 1)
    s = dialogue_scores([log, _script()])
    assert (s["background_barge_in_rate"], s["echo_barge_ins"], s["agent_turns"]) == (1.0, 1, 7)
    assert s["unprompted_turns"] == 2  # and _script()'s turn 3, which took over a pause
    assert dialogue_scores([_script()])["echo_barge_ins"] == 0  # every stop there had speech under it


def test_background_speech_round_trips_through_the_log(tmp_path):
    log = DialogueLog("d", (UserSpeech("background", 1500, 3000, (), "tv"),), ())
    write_dialogue_logs(tmp_path / "d.jsonl", [log])
    assert read_dialogue_logs(tmp_path / "d.jsonl") == [log]


def test_agent_pause_cuts_playback_at_once_and_a_resume_plays_on_from_its_release():
    # chunks released at 1000 (400 ms) and 1100 (400 ms) would play to 1800; the user speaks at
    # 1300, `agent_pause` at 1450 cuts playback there (the client drops its buffer); an
    # interruption's reaction is 1450 - 1300 even though `interrupted` comes at 2500
    user = (UserSpeech("turn", 0, 800), UserSpeech("interruption", 1300, 2000))
    events = (_audio(1000, 1, 400), _audio(1100, 1, 400), TimedEvent(1450, "agent_pause", 1),
              TimedEvent(2500, "interrupted", 1))
    (turn,) = agent_turns(events)
    assert turn.stop_ms == 1450
    m = measure(DialogueLog("d", user, events))
    assert m.barge_in_ms == [150] and m.barge_in_missed == 0
    # a backchannel: paused at 1450, resumed at 1900 with 600 ms re-sent from there -> ends at 2500,
    # not interrupted: no false barge-in, and the turn plays on past the pause
    user = (UserSpeech("turn", 0, 800), UserSpeech("backchannel", 1300, 1500))
    events = (_audio(1000, 1, 400), _audio(1100, 1, 400), TimedEvent(1450, "agent_pause", 1),
              TimedEvent(1900, "agent_resume", 1), _audio(1900, 1, 600))
    (turn,) = agent_turns(events)
    assert (turn.start_ms, turn.stop_ms, turn.interrupted_ms) == (1000, 2500, None)
    m = measure(DialogueLog("d", user, events))
    assert (m.backchannels, m.false_barge_ins) == (1, 0)
