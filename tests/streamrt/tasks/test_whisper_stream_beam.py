"""Beam search settings of WhisperStreamingModel (``beam_size``, ``beam_patience``, ``length_penalty``)
on the stand-ins of conftest.py: beam_size 1 is today's greedy path, larger beams reach the decoder
with the step's guards, and streams run to the end with every policy. The search itself is checked
against a reference in tests/streamrt/decoding/test_beam_search.py."""

import numpy as np
import pytest

from streamrt.decoding import BeamSettings
from streamrt.errors import ConfigError


def _audio(seconds, seed=0):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, int(16000 * seconds)).astype(np.float32)


def _run(model, streams, audio):
    for i in range(0, len(audio), 4000):
        for s in streams:
            s.accept_audio(audio[i : i + 4000])
        while any(s.is_ready() for s in streams):
            model.step(streams)
    for s in streams:
        s.input_finished()
    while any(s.is_ready() for s in streams):
        model.step(streams)
    return [[u.text for u in s.pop_result().committed] for s in streams]


def _recording(model, monkeypatch):
    requests, results = [], []
    real = model.decoder.greedy_many

    def recording(reqs):
        requests.extend(reqs)
        out = real(reqs)
        results.extend(out)
        return out

    monkeypatch.setattr(model.decoder, "greedy_many", recording)
    return requests, results


def test_beam_size_one_is_the_greedy_path(make_streaming, monkeypatch):
    greedy, one = make_streaming(), make_streaming(beam_size=1)
    requests, _ = _recording(one, monkeypatch)
    audio = _audio(2.2, seed=1)
    words = _run(greedy, [greedy.create_stream()], audio)
    assert _run(one, [one.create_stream()], audio) == words
    assert requests and all(r.beam is None for r in requests)


@pytest.mark.parametrize("policy, settings", [
    ("local-agreement", {}),
    ("alignatt", {"stop_at_policy": True, "max_loop_iterations": 2}),
])
def test_beams_reach_the_decoder_and_streams_run_to_the_end(make_streaming, monkeypatch, policy, settings):
    model = make_streaming(beam_size=3, length_penalty=0.5, **settings)
    requests, results = _recording(model, monkeypatch)
    streams = [model.create_stream({"policy": policy}) for _ in range(3)]
    words = _run(model, streams, _audio(2.4, seed=2))
    assert all(s.is_done() for s in streams) and all(words)
    assert {r.beam for r in requests} == {BeamSettings(3, 1.0, 0.5)}
    if settings:  # the step's guards still reach a beam decode (not the last one, which runs to the end)
        assert any(r.stop is not None and r.max_iterations == 2 for r in requests)
        assert {res.stopped_by for res in results} & {"policy", "iterations"}


@pytest.mark.parametrize("name, value", [("beam_size", 0), ("beam_size", 2.5), ("beam_patience", 0.0),
                                         ("length_penalty", -1.0)])
def test_bad_beam_settings_are_config_errors_that_name_the_setting(make_streaming, name, value):
    with pytest.raises(ConfigError, match=name):
        make_streaming(**{name: value})
