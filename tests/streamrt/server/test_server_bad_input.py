"""Issue 17, part 1: hostile input to the sans-I/O protocol is answered with an ``error`` that names
the problem; a started session then ends with ``end`` and every committed word; never 1011.

Driven synchronously (no sockets), like test_server_protocol.py.
"""

from __future__ import annotations

import json

import pytest

from streamrt.server.protocol import CloseCode
from streamrt.server.settings import ServerSettings
from tests.streamrt.server.test_server_protocol import START, make, pcm_s16, pump, types

HUGE_INT = "1" * 5000  # over Python's 4300-digit int/str conversion limit
DEEP = "[" * 10000 + "]" * 10000


def only_error(proto) -> dict:
    (err,) = proto.data_to_send()
    assert err["type"] == "error" and err["fatal"] is True and err["code"] and err["message"]
    return err


def started(seconds: float = 1.5, **kw):
    """A session that has committed w0..w(n-1) and has more audio in flight."""
    proto, model = make(**kw)
    proto.receive_text(json.dumps(START))
    proto.receive_binary(pcm_s16(seconds))
    msgs = pump(proto, model)
    assert [w["text"] for m in msgs if m["type"] == "commit" for w in m["words"]] == ["w0", "w1"]
    proto.receive_binary(pcm_s16(0.6))  # more words in this audio, not yet committed
    return proto, model, msgs


def assert_ends_with_every_word(proto, model, msgs, code: str) -> dict:
    msgs = msgs + proto.data_to_send() + pump(proto, model)
    errors = [m for m in msgs if m["type"] == "error"]
    assert [e["code"] for e in errors] == [code] and errors[0]["message"]
    words = [w["text"] for m in msgs if m["type"] == "commit" for w in m["words"]]
    assert len(words) >= 3 and words == [f"w{i}" for i in range(len(words))]  # nothing lost, in order
    assert types(msgs)[-1] == "end" and types(msgs).count("end") == 1 and msgs[-1]["words"] == len(words)
    assert proto.close is not None and proto.close[0] != CloseCode.INTERNAL_ERROR
    return errors[0]


# ---- item 1: integers over Python's int-string limit --------------------------------------------
def test_item1_huge_integer_in_start_is_a_client_error_not_a_crash():
    proto, _ = make()
    proto.receive_text('{"type":"start","sample_rate":' + HUGE_INT + ',"encoding":"pcm_s16le"}')
    err = only_error(proto)
    assert err["code"] == "json_number_too_long" and "4300" in err["message"]
    assert proto.close[0] == CloseCode.POLICY_VIOLATION


def test_item1_huge_integer_mid_stream_still_ends_with_every_commit():
    proto, model, msgs = started()
    proto.receive_text('{"type":"stop","x":' + HUGE_INT + "}")
    assert_ends_with_every_word(proto, model, msgs, "json_number_too_long")


# ---- item 2: deep nesting -------------------------------------------------------------------------
def test_item2_deep_nesting_before_start_is_a_client_error():
    proto, _ = make()
    proto.receive_text(DEEP)
    err = only_error(proto)
    assert err["code"] == "json_too_deep" and "nest" in err["message"]
    assert proto.close[0] == CloseCode.POLICY_VIOLATION


def test_item2_deep_nesting_mid_stream_still_ends_with_every_commit():
    proto, model, msgs = started()
    proto.receive_text('{"type":"x","y":' + DEEP + "}")
    assert_ends_with_every_word(proto, model, msgs, "json_too_deep")


# ---- item 3: a list or object where a string or number belongs -----------------------------------------
@pytest.mark.parametrize(
    "field, value",
    [("encoding", []), ("encoding", {}), ("encoding", 5), ("sample_rate", []), ("channels", {"a": 1}),
     ("task", ["x"]), ("language", {}), ("model", [1]), ("policy", [])],
)
def test_item3_wrong_type_in_start_is_bad_start_not_internal_error(field, value):
    proto, _ = make()
    proto.receive_text(json.dumps({**START, field: value}))
    err = only_error(proto)
    assert err["code"] in ("bad_start", "unsupported_sample_rate", "unsupported_channels")
    assert repr(field) in err["message"] or field in err["message"]
    assert proto.close[0] == CloseCode.POLICY_VIOLATION


def test_item3_a_huge_wrong_value_is_not_echoed_whole():
    proto, _ = make()
    proto.receive_text(json.dumps({**START, "encoding": ["x" * 100000]}))
    err = only_error(proto)
    assert err["code"] == "bad_start" and len(err["message"]) < 300


# ---- item 4: lone surrogates ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        '{"type":"start","sample_rate":16000,"encoding":"pcm_s16le","\\ud800":1}',
        '{"type":"start","sample_rate":16000,"encoding":"\\udfff"}',
        '{"type":"\\ud800"}',
    ],
)
def test_item4_lone_surrogate_is_answered_and_closed_with_a_sendable_reason(text):
    proto, _ = make()
    proto.receive_text(text)
    msgs = proto.data_to_send()
    assert msgs and msgs[0]["type"] == "error" and msgs[0]["code"] and msgs[0]["message"]
    json.dumps(msgs[0], ensure_ascii=False).encode("utf-8")  # what a transport sends must encode
    if proto.close is not None:
        proto.close[1].encode("utf-8")  # the close reason too
        assert proto.close[0] != CloseCode.INTERNAL_ERROR


def test_item4_bad_start_names_the_unknown_field():
    proto, _ = make()
    proto.receive_text('{"type":"start","sample_rate":16000,"encoding":"pcm_s16le","\\ud800":1}')
    err = only_error(proto)
    assert err["code"] == "bad_start" and "\\ud800" in err["message"]


# ---- item 5 (protocol side): text that is not UTF-8 --------------------------------------------------
def test_item5_invalid_utf8_text_before_start_is_answered():
    proto, _ = make()
    proto.receive_text(b'{"type":"start","x":"\xff"}')
    err = only_error(proto)
    assert err["code"] == "not_utf8" and "UTF-8" in err["message"]
    assert proto.close[0] == CloseCode.INVALID_DATA


def test_item5_invalid_utf8_text_mid_stream_ends_with_every_commit_then_1007():
    proto, model, msgs = started()
    proto.receive_text(b"\xc3\x28")
    assert_ends_with_every_word(proto, model, msgs, "not_utf8")
    assert proto.close[0] == CloseCode.INVALID_DATA


def test_item5_valid_utf8_bytes_are_read_as_text():
    proto, model = make()
    proto.receive_text(json.dumps(START).encode())
    proto.receive_text('{"type":"stop"}'.encode())
    assert types(pump(proto, model)) == ["ready", "end"]


# ---- item 8: limits print exactly --------------------------------------------------------------------------
def test_item8_message_too_big_prints_the_exact_numbers():
    proto, _ = make()  # max_message_bytes 1048576
    proto.receive_binary(b"\0" * (1048576 + 2))
    err = only_error(proto)
    assert "1048578 bytes" in err["message"] and "limit of 1048576 bytes" in err["message"]


def test_item8_fractional_limits_keep_their_digits():
    from streamrt.errors import LimitExceeded

    e = LimitExceeded("max_stream_s", 14400.0, 14400.25, "s")
    assert "14400.25 s" in e.message and "limit of 14400 s" in e.message


def test_item8_text_size_counts_bytes_not_characters():
    proto, _ = make(ServerSettings(max_message_bytes=100))
    proto.receive_text('{"type":"' + "é" * 60 + '"}')  # 60 characters, 120 bytes
    err = only_error(proto)
    assert err["code"] == "message_too_big" and "limit of 100 bytes" in err["message"]
