"""The /v1/dialogue protocol without sockets: start validated with the problem and the limit named,
ready announcing the output format, PCM in at any rate reaching the session as 16 kHz, the session's
events as messages and its audio as pcm_s16le frames (resampled on request), playback reports,
stop -> end -> close 1000, and every bad message answered."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamrt.clock import ManualClock
from streamrt.server.dialogue_protocol import DialogueProtocol
from streamrt.server.protocol import CloseCode
from streamrt.server.settings import ServerSettings
from tests.streamrt.server.dialogue_helpers import ToneAgent

START = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1}


def pcm(seconds: float, loud: bool, rate: int = 16000) -> bytes:
    n = int(rate * seconds)
    x = 0.5 * np.sin(np.arange(n) / 3.0) if loud else np.zeros(n)
    return (x * 32767).astype("<i2").tobytes()


def _proto(settings=ServerSettings(), **kw):
    clock = ManualClock()
    agent = ToneAgent(clock, **kw)
    return DialogueProtocol(agent, None, settings), agent, clock


def _json(out):
    return [m for m in out if isinstance(m, dict)]


def test_a_spoken_turn_is_answered_with_audio_frames_then_stop_ends():
    p, agent, clock = _proto()
    p.receive_text(json.dumps({**START, "sample_rate": 48000}))
    ready = p.data_to_send()[0]
    assert ready["type"] == "ready" and ready["output_sample_rate"] == 24000 and ready["output_encoding"] == "pcm_s16le"
    assert ready["sample_rate"] == 48000 and ready["settings"] == {"agent": "tone"}
    p.receive_binary(pcm(1.0, True, 48000))
    for _ in range(4):
        p.receive_binary(pcm(0.1, False, 48000))
    assert agent.sessions[0].received_ms == pytest.approx(1400, abs=40)  # resampled to 16 kHz
    out = p.data_to_send()
    assert [m["type"] for m in _json(out)] == ["user_commit", "agent_turn_start", "agent_text"]
    assert [len(m) for m in out if isinstance(m, bytes)] == [4800, 4800]  # 2 x 100 ms, 200 ms ahead
    clock.advance(0.35)
    p.tick()  # audio comes out on ticks, not only on input
    out = p.data_to_send()
    assert [len(m) for m in out if isinstance(m, bytes)] == [4800] * 3
    end = _json(out)[-1]
    assert end["type"] == "agent_turn_end" and end["turn"] == 1 and end["text"] == "Hello there."
    p.receive_text('{"type": "playback", "turn": 1, "position_ms": 480}')
    assert agent.sessions[0].playback == [(1, 480.0)]
    p.receive_text('{"type": "stop"}')
    end = p.data_to_send()[-1]
    assert end["type"] == "end" and end["summary"] == {"turns": 1} and end["agent_audio_s"] == pytest.approx(0.5)
    assert p.close == (CloseCode.NORMAL, "end of dialogue")


def test_output_sample_rate_resamples_the_agent_audio():
    p, _, clock = _proto(answer_ms=200)
    p.receive_text(json.dumps({**START, "output_sample_rate": 16000, "greeting": "Hi."}))
    out = p.data_to_send()
    assert out[0]["output_sample_rate"] == 16000
    clock.advance(1.0)
    p.receive_text('{"type": "stop"}')
    audio = b"".join(m for m in out + p.data_to_send() if isinstance(m, bytes))
    assert 2800 < len(audio) // 2 <= 3200  # 200 ms at 16 kHz (the resampler holds ~20 ms back)


@pytest.mark.parametrize("start, code, words", [
    ({**START, "voice": "x"}, "bad_start", ["unknown field", "'voice'", "allowed: type, sample_rate"]),
    ({**START, "encoding": "opus"}, "unsupported_encoding", ["'opus'", "pcm_s16le, pcm_f32le"]),
    ({**START, "sample_rate": 4000}, "unsupported_sample_rate", ["4000", "8000 to 192000"]),
    ({**START, "output_sample_rate": 96000}, "unsupported_sample_rate", ["96000", "8000 to 48000"]),
    ({**START, "turn_policy": "magic"}, "bad_config", ["'magic'", "installed: silence"]),
    ({**START, "greeting": 3}, "bad_start", ["'greeting' must be a string"]),
    ({"type": "start", "encoding": "pcm_s16le"}, "bad_start", ["missing required field 'sample_rate'"]),
])
def test_a_bad_start_is_refused_naming_the_problem_and_the_limit(start, code, words):
    p, _, _ = _proto()
    p.receive_text(json.dumps(start))
    err = p.data_to_send()[0]
    assert err["type"] == "error" and err["code"] == code and err["fatal"], err
    for w in words:
        assert w in err["message"], err["message"]
    assert p.close is not None and p.close[0] == CloseCode.POLICY_VIOLATION


def test_bad_messages_during_a_dialogue_are_answered_and_it_goes_on():
    p, agent, _ = _proto(settings=ServerSettings(max_message_bytes=1000, max_stream_s=2.0))
    p.receive_binary(b"\0\0")
    assert p.data_to_send()[0]["code"] == "not_started" and p.close is not None

    p, agent, _ = _proto(settings=ServerSettings(max_message_bytes=1000, max_stream_s=2.0))
    p.receive_text(json.dumps(START))
    p.data_to_send()
    p.receive_binary(b"\0\0\0")
    p.receive_text('{"type": "playback", "turn": 0}')
    p.receive_text('{"type": "hello"}')
    p.receive_text(json.dumps(START))
    errs = p.data_to_send()
    assert [(e["code"], e["fatal"]) for e in errs] == [("partial_frame", False), ("bad_playback", False),
                                                       ("unknown_type", False), ("already_started", False)]
    assert "multiple of 2 bytes" in errs[0]["message"] and "position_ms" in errs[1]["message"]
    assert "known: start, playback, video, stop" in errs[2]["message"]
    for _ in range(2):
        p.receive_binary(pcm(0.03, False))  # 960 bytes, under max_message_bytes
    p.receive_binary(pcm(0.1, False))  # 3200 bytes
    err, end = p.data_to_send()  # the session ends (its answer out), then 1009
    assert err["code"] == "message_too_big" and "3200 bytes is over the limit of 1000 bytes" in err["message"]
    assert "max_message_bytes" in err["message"]
    assert end["type"] == "end" and p.close[0] == CloseCode.MESSAGE_TOO_BIG


def test_max_stream_s_is_named_with_the_numbers():
    p, _, _ = _proto(settings=ServerSettings(max_stream_s=1.0, max_message_bytes=None))
    p.receive_text(json.dumps(START))
    p.receive_binary(pcm(0.8, False))
    p.receive_binary(pcm(0.4, False))
    err = [m for m in p.data_to_send() if m["type"] == "error"][0]
    assert err["code"] == "limit_exceeded" and "1.2 s is over the limit of 1 s (setting max_stream_s)" in err["message"]


def test_connection_lost_closes_the_session():
    p, agent, _ = _proto()
    p.receive_text(json.dumps(START))
    p.connection_lost()
    assert agent.sessions[0].closed and p.state == "closed"
