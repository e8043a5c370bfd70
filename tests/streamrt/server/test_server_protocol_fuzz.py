"""Property-based fuzzing of the sans-I/O ``ServerProtocol`` (issue 17, part 2; docs/protocol.md).

Hypothesis generates sequences of client messages (valid and invalid JSON, wrong types, huge
numbers, deep nesting, lone surrogates, invalid UTF-8, binary before ``start``, odd byte counts,
messages after ``stop``) interleaved with model steps, shutdowns and transport failures. After every
call it checks the protocol's promises:

- no exception escapes to the transport;
- every message is one of the five server types; every ``error`` has a code, a message and ``fatal``;
- committed words are never lost or reordered (the counting model commits w0, w1, ...), and ``end``
  carries exactly the words committed before it;
- ``end`` comes at most once, nothing follows it, and a client's input never closes with 1011;
- a started session always reaches ``end`` once ``stop`` is processed.

The default run tries ``STREAMRT_FUZZ_EXAMPLES`` (default 300) sequences in a few seconds. For a
long run: ``STREAMRT_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/streamrt/server/test_server_protocol_fuzz.py``.
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrt.clock import ManualClock
from streamrt.errors import StreamrtError
from streamrt.server.protocol import CloseCode, ServerProtocol
from streamrt.server.settings import ServerSettings
from tests.streamrt.server.server_helpers import PolicyCheckingModel

EXAMPLES = int(os.environ.get("STREAMRT_FUZZ_EXAMPLES", "300"))
SERVER_TYPES = {"ready", "partial", "commit", "error", "end"}
START = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
starts = st.fixed_dictionaries(
    {"type": st.just("start")},
    optional={
        "sample_rate": st.sampled_from([16000, 8000, 44100, 7, 0, -1, 16000.5, "16000"]) | json_values,
        "encoding": st.sampled_from(["pcm_s16le", "pcm_f32le", "mp3", ""]) | json_values,
        "channels": st.sampled_from([1, 2, 0, 9, True]) | json_values,
        "policy": st.sampled_from(["local-agreement", "wait-k", "nope"]) | json_values,
        "policy_options": st.sampled_from([{}, {"n": 2}, {"k": 3}, {"zz": 1}]) | json_values,
        "model": st.sampled_from(["counting", "other"]) | json_values,
        "task": json_values,
        "language": json_values,
        "\ud800": json_values,
    },
)
hostile = st.sampled_from(
    [
        '{"type":"start","sample_rate":' + "1" * 5000 + ',"encoding":"pcm_s16le"}',  # over 4300 digits
        '{"type":"stop","n":-' + "9" * 4400 + "}",
        "[" * 10000 + "]" * 10000,
        '{"type":"x","y":' + "[" * 5000 + "]" * 5000 + "}",
        '{"type":"start","sample_rate":16000,"encoding":[]}',
        '{"type":"start","sample_rate":16000,"encoding":{"a":1}}',
        '{"type":"start","sample_rate":[],"encoding":"pcm_s16le","channels":{}}',
        '{"type":"start","sample_rate":16000,"encoding":"pcm_s16le","\\ud800":1}',
        '{"type":"\\ud800"}',
        '{"type":"start","sample_rate":16000,"encoding":"\\udfff"}',
        '{"type":"start","sample_rate":1e999,"encoding":"pcm_s16le"}',
        '{"type":"start","sample_rate":NaN,"encoding":"pcm_s16le"}',
    ]
)
texts = st.one_of(
    hostile,
    st.just(json.dumps(START)),
    st.just(json.dumps({**START, "encoding": "pcm_f32le", "sample_rate": 44100, "channels": 2})),
    starts.map(json.dumps),
    st.sampled_from(['{"type":"stop"}', '{"type":"keepalive"}', '{"type":"start"}', "{}", "[]", "null", '{"type":3}']),
    json_values.map(json.dumps),
    st.dictionaries(st.text(max_size=6), json_values, max_size=3).map(lambda d: json.dumps({"type": "stop", **d})),
    st.integers(4200, 4500).map(lambda n: '{"type":"start","sample_rate":' + "7" * n + "}"),
    st.integers(900, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(900, 3000).map(lambda n: '{"type":"stop","x":' + '{"a":' * n + "1" + "}" * n + "}"),
    st.text(max_size=40),
)
actions = st.one_of(
    st.tuples(st.just("text"), texts),
    st.tuples(st.just("text"), hostile),
    st.tuples(st.just("text_bytes"), st.binary(max_size=24) | texts.map(lambda t: t.encode("utf-8", "surrogatepass"))),
    st.tuples(st.just("binary"), st.integers(0, 9000), st.sampled_from([b"\0", b"\x01", b"\xff"])),
    st.tuples(st.just("binary_raw"), st.binary(max_size=64)),
    st.tuples(st.just("step")),
    st.tuples(st.just("stop")),
    st.tuples(st.just("shutdown")),
    st.tuples(st.just("fail")),
)
server_settings = st.builds(
    ServerSettings,
    max_message_bytes=st.sampled_from([1 << 20, 4096, 64]),
    max_buffered_audio_s=st.sampled_from([0.2, 30.0, None]),
    max_stream_s=st.sampled_from([0.5, None]),
    model_name=st.just("counting"),
)


class Checker:
    """Reads everything the protocol sends and asserts the invariants after every call."""

    def __init__(self, proto: ServerProtocol):
        self.proto = proto
        self.words: list[str] = []
        self.ended = False

    def check(self) -> None:
        for m in self.proto.data_to_send():
            json.dumps(m)  # what the transport will encode (ensure_ascii escapes lone surrogates)
            assert m["type"] in SERVER_TYPES, m
            assert not self.ended, f"{m} after end"
            if m["type"] == "error":
                assert isinstance(m["code"], str) and m["code"], m
                assert isinstance(m["message"], str) and m["message"], m
                assert isinstance(m["fatal"], bool), m
            elif m["type"] == "commit":
                self.words += [w["text"] for w in m["words"]]
                assert self.words == [f"w{i}" for i in range(len(self.words))], self.words  # none lost or reordered
            elif m["type"] == "end":
                self.ended = True
                assert m["words"] == len(self.words) and m["text"] == " ".join(self.words), (m, self.words)
        if self.proto.close is not None:
            code, reason = self.proto.close
            reason.encode("utf-8")  # a close reason must be sendable
            assert code != CloseCode.INTERNAL_ERROR, self.proto.close  # client input is never a server error


def run(proto: ServerProtocol, model, check: Checker, action: tuple) -> None:
    kind = action[0]
    if kind in ("text", "text_bytes"):
        proto.receive_text(action[1])
    elif kind == "binary":
        proto.receive_binary(action[2] * action[1])
    elif kind == "binary_raw":
        proto.receive_binary(action[1])
    elif kind == "step":
        if proto.session is not None:
            proto.session.run_until_blocked(model)
            proto.collect()
    elif kind == "stop":
        proto.stop()
    elif kind == "shutdown":
        proto.shutdown()
    elif kind == "fail":
        proto.fail(StreamrtError("no message from the client for 1 s (setting idle_timeout_s)", code="idle_timeout"))
    check.check()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(server_settings, st.lists(actions, max_size=12))
def test_no_input_sequence_breaks_the_protocols_promises(server_settings, sequence):
    model = PolicyCheckingModel()
    proto = ServerProtocol(model, ManualClock(), server_settings)
    check = Checker(proto)
    for action in sequence:
        run(proto, model, check, action)
    # the client says stop and the scheduler steps: a started session must end, with every word
    started = proto.session is not None
    for action in (("stop",), ("step",), ("step",)):
        run(proto, model, check, action)
    if started:
        assert check.ended and proto.close is not None, "a started session did not end after stop"
