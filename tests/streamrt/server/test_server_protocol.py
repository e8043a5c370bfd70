"""Protocol v1 (docs/protocol.md), driven synchronously: no sockets, no event loop."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamrt.clock import ManualClock
from streamrt.server.protocol import CloseCode, ServerProtocol, parse_start
from streamrt.server.settings import ServerSettings
from tests.streamrt.server.server_helpers import PolicyCheckingModel

START = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1}


def pcm_s16(seconds: float, rate: int = 16000, channels: int = 1) -> bytes:
    n = int(seconds * rate)
    x = (0.1 * np.sin(np.arange(n) / 10.0)).astype(np.float32)
    x = np.repeat(x[:, None], channels, axis=1)
    return (x * 32767).astype("<i2").tobytes()


def make(settings: ServerSettings = ServerSettings(model_name="counting"), **model_kw) -> tuple[ServerProtocol, PolicyCheckingModel]:
    model = PolicyCheckingModel(**model_kw)
    return ServerProtocol(model, ManualClock(), settings), model


def pump(proto: ServerProtocol, model) -> list[dict]:
    """What a scheduler does: run every ready step, then collect."""
    if proto.session is not None:
        proto.session.run_until_blocked(model)
        proto.collect()
    return proto.data_to_send()


def types(msgs: list[dict]) -> list[str]:
    return [m["type"] for m in msgs]


def test_happy_path_ready_partial_commit_end_then_normal_close():
    proto, model = make()
    proto.receive_text(json.dumps({**START, "policy": "wait-k", "policy_options": {"k": 3}}))
    (ready,) = proto.data_to_send()
    assert ready["type"] == "ready" and ready["protocol"] == 1 and ready["session_id"]
    assert ready["options"] == {"policy": "wait-k", "policy_options": {"k": 3}}
    assert ready["settings"]["model"] == "counting" and ready["limits"]["max_message_bytes"] == 1 << 20
    msgs = []
    for _ in range(10):  # 2.5 s in 250 ms messages
        proto.receive_binary(pcm_s16(0.25))
        msgs += pump(proto, model)
    assert "partial" in types(msgs) and "commit" in types(msgs)
    assert proto.close is None
    proto.receive_text('{"type": "stop"}')
    msgs += pump(proto, model)
    assert types(msgs)[-1] == "end"
    words = [w for m in msgs if m["type"] == "commit" for w in m["words"]]
    assert [w["text"] for w in words] == ["w0", "w1", "w2", "w3", "w4"]  # 2.5 s of 500 ms words
    assert set(words[0]) == {"text", "start_ms", "end_ms", "media_delay_ms", "elapsed_ms"}
    assert all(w["media_delay_ms"] >= w["end_ms"] for w in words)
    end = msgs[-1]
    assert end["text"] == "w0 w1 w2 w3 w4" and end["summary"]["units"] == 5 and end["source_ms"] == 2500.0
    assert proto.close == (CloseCode.NORMAL, "end of stream")


def test_f32_stereo_44k_is_accepted_and_resampled():
    proto, model = make()
    proto.receive_text(json.dumps({**START, "encoding": "pcm_f32le", "sample_rate": 44100, "channels": 2}))
    x = np.zeros((44100, 2), "<f4").tobytes()  # 1 s
    proto.receive_binary(x)
    proto.receive_text('{"type":"stop"}')
    msgs = pump(proto, model)
    assert msgs[-1]["type"] == "end" and abs(msgs[-1]["source_ms"] - 1000.0) < 5


@pytest.mark.parametrize(
    "text, code, close",
    [
        ("hello", "not_json", CloseCode.INVALID_DATA),
        ("[1, 2]", "bad_message", CloseCode.POLICY_VIOLATION),
        ('{"type": 3}', "bad_message", CloseCode.POLICY_VIOLATION),
        ('{"type": "stop"}', "not_started", CloseCode.POLICY_VIOLATION),
        (json.dumps({**START, "encoding": "mp3"}), "unsupported_encoding", CloseCode.POLICY_VIOLATION),
        (json.dumps({**START, "sample_rate": 1000}), "unsupported_sample_rate", CloseCode.POLICY_VIOLATION),
        (json.dumps({**START, "sample_rate": "16k"}), "unsupported_sample_rate", CloseCode.POLICY_VIOLATION),
        (json.dumps({**START, "channels": 0}), "unsupported_channels", CloseCode.POLICY_VIOLATION),
        (json.dumps({"type": "start", "encoding": "pcm_s16le"}), "bad_start", CloseCode.POLICY_VIOLATION),
        (json.dumps({**START, "bitrate": 5}), "bad_start", CloseCode.POLICY_VIOLATION),
        (json.dumps({**START, "policy": "nope"}), "unknown_policy", CloseCode.POLICY_VIOLATION),
        (json.dumps({**START, "policy": "wait-k", "policy_options": {"q": 1}}), "bad_policy_option", CloseCode.POLICY_VIOLATION),
        (json.dumps({**START, "policy_options": [1]}), "bad_start", CloseCode.POLICY_VIOLATION),
        (json.dumps({**START, "background": "yes"}), "bad_start", CloseCode.POLICY_VIOLATION),
        (json.dumps({**START, "model": "large-v3"}), "unknown_model", CloseCode.POLICY_VIOLATION),
    ],
)
def test_fatal_input_before_start_gets_error_then_close(text, code, close):
    proto, _ = make()
    proto.receive_text(text)
    (err,) = proto.data_to_send()
    assert err["type"] == "error" and err["code"] == code and err["fatal"] is True
    assert proto.close[0] == close and proto.session is None


def test_error_messages_name_the_problem_and_the_limit():
    proto, _ = make()
    proto.receive_text(json.dumps({**START, "sample_rate": 1000}))
    assert "8000 to 192000" in proto.data_to_send()[0]["message"]
    proto, _ = make()
    proto.receive_text(json.dumps({**START, "policy": "nope"}))
    assert "'nope'" in (m := proto.data_to_send()[0]["message"]) and "wait-k" in m
    proto, _ = make(ServerSettings(max_message_bytes=1000))
    proto.receive_binary(b"\0" * 1002)
    (err,) = proto.data_to_send()
    assert err["code"] == "message_too_big" and "1002 bytes" in err["message"] and "1000 bytes" in err["message"]
    assert "max_message_bytes" in err["message"] and proto.close[0] == CloseCode.MESSAGE_TOO_BIG


def test_binary_before_start_is_fatal():
    proto, _ = make()
    proto.receive_binary(pcm_s16(0.1))
    (err,) = proto.data_to_send()
    assert err["code"] == "not_started" and proto.close[0] == CloseCode.POLICY_VIOLATION


def test_non_fatal_errors_keep_the_session_going():
    proto, model = make(ServerSettings(max_buffered_audio_s=1.0))
    proto.receive_text(json.dumps(START))
    proto.receive_text(json.dumps(START))  # start twice
    proto.receive_text('{"type": "resume"}')  # unknown type
    proto.receive_binary(b"\0\0\0")  # odd byte count for s16
    proto.receive_binary(pcm_s16(0.8))
    proto.receive_binary(pcm_s16(0.8))  # 1.6 s buffered ahead of the model > 1.0 s
    msgs = proto.data_to_send()
    errors = {m["code"]: m for m in msgs if m["type"] == "error"}
    assert set(errors) == {"already_started", "unknown_type", "partial_frame", "buffer_full"}
    assert not any(e["fatal"] for e in errors.values())
    assert "3 bytes" in errors["partial_frame"]["message"] and "multiple of 2" in errors["partial_frame"]["message"]
    assert "1 s" in errors["buffer_full"]["message"] and "max_buffered_audio_s" in errors["buffer_full"]["message"]
    assert proto.close is None
    proto.stop()
    proto.stop()  # stop twice
    msgs = pump(proto, model)
    assert [m["code"] for m in msgs if m["type"] == "error"] == ["already_stopped"]
    assert msgs[-1]["type"] == "end" and msgs[-1]["source_ms"] == 800.0  # the dropped chunk is not counted
    assert proto.close[0] == CloseCode.NORMAL


def test_fatal_error_mid_stream_commits_everything_before_end_then_closes():
    proto, model = make(ServerSettings(max_message_bytes=20000))
    proto.receive_text(json.dumps(START))
    proto.receive_binary(pcm_s16(0.6))
    proto.receive_binary(b"\0" * 30000)  # too big: fatal, but what arrived is still committed
    msgs = proto.data_to_send() + pump(proto, model)
    assert types(msgs)[1] == "error" and msgs[1]["code"] == "message_too_big"
    words = [w["text"] for m in msgs if m["type"] == "commit" for w in m["words"]]
    assert words == ["w0", "w1"] and types(msgs)[-1] == "end"
    assert proto.close[0] == CloseCode.MESSAGE_TOO_BIG


def test_shutdown_ends_the_session_and_closes_going_away():
    proto, model = make()
    proto.receive_text(json.dumps(START))
    proto.receive_binary(pcm_s16(1.0))
    proto.shutdown()
    msgs = pump(proto, model)
    assert [m["code"] for m in msgs if m["type"] == "error"] == ["shutting_down"]
    assert types(msgs)[-1] == "end" and msgs[-1]["words"] == 2
    assert proto.close[0] == CloseCode.GOING_AWAY


def test_audio_after_stop_is_reported_not_fatal():
    proto, model = make()
    proto.receive_text(json.dumps(START))
    proto.receive_binary(pcm_s16(0.5))  # not yet stepped: the session cannot end at stop
    proto.stop()
    proto.receive_binary(pcm_s16(0.1))
    msgs = proto.data_to_send()
    assert msgs[-1]["code"] == "session_closed" and msgs[-1]["fatal"] is False


def test_parse_start_keeps_only_model_options():
    req = parse_start({**START, "task": "transcribe", "language": None, "policy": "wait-k"}, model_name=None)
    assert req.options == {"task": "transcribe", "policy": "wait-k"} and req.channels == 1


def test_model_failure_ends_with_what_was_committed_and_closes_1011():
    from streamrt.errors import StreamrtError

    proto, model = make()
    proto.receive_text(json.dumps(START))
    proto.receive_binary(pcm_s16(1.5))
    msgs = pump(proto, model)
    proto.session.fail(StreamrtError("model step failed: boom", code="model_error"))  # as the scheduler does
    proto.collect()
    msgs += proto.data_to_send()
    assert types(msgs)[-2:] == ["error", "end"] and msgs[-1]["words"] == 2
    assert proto.close[0] == CloseCode.INTERNAL_ERROR


def test_random_input_never_raises_and_always_answers_with_protocol_messages():
    import random

    rng = random.Random(0)
    pieces = ['{"type": "start"', '"sample_rate": 16000', '"encoding": "pcm_s16le"', '"type": "stop"', "}", "{", ",",
              '"channels": 2', '"policy": 1', "null", "[]", '"type": "x"', '"\\ud800"']
    for _ in range(300):
        proto, model = make(ServerSettings(max_message_bytes=4096, max_buffered_audio_s=0.5))
        for _ in range(rng.randint(1, 8)):
            if rng.random() < 0.4:
                proto.receive_binary(rng.randbytes(rng.randint(0, 5000)))
            elif rng.random() < 0.5:
                proto.receive_text(json.dumps({**START, "channels": rng.choice([1, 2, 3, 0, "1"])}))
            else:
                proto.receive_text("".join(rng.choice(pieces) for _ in range(rng.randint(0, 6))))
            for m in pump(proto, model):
                assert m["type"] in {"ready", "partial", "commit", "error", "end"}
                if m["type"] == "error":
                    assert m["code"] and m["message"]
        proto.stop()
        msgs = pump(proto, model)
        if proto.session is not None and proto.close is None:
            raise AssertionError(f"a started session did not end after stop: {msgs}")
