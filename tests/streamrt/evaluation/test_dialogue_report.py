"""The per-turn end-of-turn diagnostics of a dialogue run (``turn_rows``, ``format_turns``): for each
user turn, the score the policy decided on, the silence it waited, the scores as they came after
the turn's last pause, and the onset, read back from a saved log (times in ms)."""

from __future__ import annotations

from metrics.dialogue import DialogueLog, TimedEvent, UserSpeech, read_dialogue_logs, write_dialogue_logs
from streamrt.evaluation.dialogue_report import format_turns, turn_rows


def _score(t, text, p, silence):
    return TimedEvent(t, "user_turn_score", text=text, data={"end_of_turn_p": p, "silence_ms": silence})


def _log() -> DialogueLog:
    # turn A: voice 0-2000 with a pause 800-1800 (scored 0.001 in it); after it a score 0.05 at
    # 160 ms of silence, the decision at 1300 ms of silence, audio at 3500 -> onset 1500.
    # turn B: voice 5000-6000, scored 0.6, decided at 250 ms, audio at 6450 -> onset 450.
    # turn C: voice 8000-9000, never answered.
    user = [UserSpeech("turn", 0, 2000, ((800, 1800),), "I want a table for two"),
            UserSpeech("turn", 5000, 6000, (), "What time is it?"),
            UserSpeech("turn", 8000, 9000, (), "Hello?")]
    events = [_score(1000, "I want a table", 0.001, 160.0),
              _score(2200, "I want a table for two", 0.05, 160.0),
              TimedEvent(3300, "user_turn_end", text="I want a table for two.",
                         data={"end_of_turn_p": 0.05, "silence_ms": 1312.0}),
              TimedEvent(3500, "agent_audio", 1, 800.0),
              _score(6200, "What time is it", 0.6, 160.0),
              TimedEvent(6300, "user_turn_end", text="What time is it?", data={"end_of_turn_p": 0.6, "silence_ms": 256.0}),
              TimedEvent(6450, "agent_audio", 2, 800.0)]
    return DialogueLog("d", tuple(user), tuple(events))


def test_each_turn_shows_the_score_and_silence_it_was_answered_on(tmp_path):
    path = tmp_path / "dialogues.jsonl"
    write_dialogue_logs(path, [_log()])
    rows = turn_rows(read_dialogue_logs(path))  # the scores survive the log file
    assert [(r["heard"], r["end_of_turn_p"], r["silence_ms"], r["onset_ms"]) for r in rows] == [
        ("I want a table for two.", 0.05, 1312.0, 1500.0),
        ("What time is it?", 0.6, 256.0, 450.0),
        (None, None, None, None)]
    # only the scores after the turn's last pause: the one inside the pause is not why it waited
    assert rows[0]["scores"] == [{"silence_ms": 160.0, "p": 0.05, "text": "I want a table for two"}]
    table = format_turns(rows).splitlines()
    assert table[2] == "| d | I want a table for two. | 0.050 | 1312 | 160: 0.050 | 1500 |"
    assert table[4] == "| d | (Hello?) | - | - |  | unanswered |"
