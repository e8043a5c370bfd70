"""WhisperStreamingModel on stand-ins (tiny random Whisper, re-encoding encoder): the streaming
contract, batching, options, trimming. Real-weight tests are in test_whisper_stream_model.py."""

import numpy as np
import pytest

from streamrt.clock import ManualClock
from streamrt.engine import ModelStream, StreamingModel
from streamrt.errors import ConfigError, PolicyOptionError, UnknownPolicyError
from streamrt.session import Session
from streamrt.tasks import whisper_commit, whisper_step, whisper_window
from streamrt.types import CommitEvent, EndEvent, Finalize, PartialEvent, StepPending


def _audio(seconds, seed=0):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, int(16000 * seconds)).astype(np.float32)


def _run(model, audio, options=None, piece_ms=250):
    session = Session(model.create_stream(options or {}), ManualClock())
    n = 16 * piece_ms
    for i in range(0, len(audio), n):
        session.receive_audio(audio[i : i + n])
        session.run_until_blocked(model)
    session.receive_eof()
    session.run_until_blocked(model)
    return session, session.events()


def test_implements_the_engine_protocols(make_streaming):
    model = make_streaming()
    assert isinstance(model, StreamingModel)
    assert isinstance(model.create_stream(), ModelStream)


def test_step_pending_steps_a_short_chunk_now_and_the_stream_goes_on(make_streaming):
    """A dialogue's end of turn: the audio held short of a full step is stepped at once, at
    first-token priority, and the stream keeps taking audio (unlike the end of input)."""
    model = make_streaming()
    session = Session(model.create_stream(), ManualClock())
    chunk_ms = model.chunk_ms
    session.receive_audio(_audio(chunk_ms / 1000 * 1.5))
    session.run_until_blocked(model)
    assert session.stream.consumed_ms == chunk_ms  # the half chunk waits for more audio
    session.receive(StepPending())
    assert session.stream.urgency().priority == 1
    session.run_until_blocked(model)
    assert session.stream.consumed_ms == 1.5 * chunk_ms and session.stream.urgency().priority == 0
    session.receive_audio(_audio(chunk_ms / 1000 * 0.5, seed=1))  # goes on, and waits again
    session.run_until_blocked(model)
    assert session.stream.consumed_ms == 1.5 * chunk_ms and not session.ended
    assert not [e for e in session.events() if not isinstance(e, (CommitEvent, PartialEvent))]


def _units(session):
    return [(u.text, u.start_ms, u.end_ms, u.media_delay_ms) for u in session.committed]


@pytest.mark.parametrize("policy", ["local-agreement", "alignatt"])
def test_finalize_commits_what_the_end_of_input_would_and_the_stream_goes_on(make_streaming, policy):
    """A dialogue's end of a speech run: the words of the audio so far are committed at once,
    exactly the units (text and times) the end of input commits for the same audio; audio that
    arrives before the Finalize is stepped is the next segment's, whose words follow on the same
    timeline, after the first segment's text as context or (``context=False``) none; a Finalize
    with nothing new received does nothing."""
    model = make_streaming()
    first, second = _audio(1.7, seed=4), _audio(1.3, seed=5)
    reference, _ = _run(model, first, {"policy": policy})
    session = Session(model.create_stream({"policy": policy}), ManualClock())
    for i in range(0, len(first), 4000):
        session.receive_audio(first[i : i + 4000])
        session.run_until_blocked(model)
    session.receive(Finalize())
    assert session.stream.urgency().priority == 1 and session.stream.is_ready()
    session.receive_audio(second[:3000])  # before the step: not part of the finalised segment
    session.run_until_blocked(model)
    assert _units(session) == _units(reference)
    assert session.stream.consumed_ms == pytest.approx(1700.0) and session.stream.stats["segments"] == 1
    assert session.stream.prompt and not session.stream.window_words  # the words are the next one's context
    session.receive_audio(second[3000:])
    session.receive(Finalize(context=False))
    session.run_until_blocked(model)
    assert session.stream.stats["segments"] == 2 and session.stream.prompt == []  # a fresh start
    session.receive_eof()
    session.run_until_blocked(model)
    assert session.ended
    later = session.committed[len(reference.committed):]
    assert later and all(u.start_ms >= 1700.0 for u in later)
    delays = [u.media_delay_ms for u in session.committed]
    assert delays == sorted(delays) and delays[-1] == pytest.approx(3000.0)
    empty = Session(model.create_stream({"policy": policy}), ManualClock())
    empty.receive(Finalize())  # nothing received since the segment began: nothing to do
    assert not empty.stream.is_ready() and empty.stream.urgency().priority == 0


@pytest.mark.parametrize("policy", ["local-agreement", "alignatt"])
def test_session_runs_to_the_end_and_commits_everything(make_streaming, policy):
    model = make_streaming()
    session, events = _run(model, _audio(2.6), {"policy": policy})
    assert isinstance(events[-1], EndEvent)
    units = session.committed
    assert units, "the final flush commits the whole hypothesis"
    assert session.stream.is_done() and session.stream.consumed_ms == pytest.approx(2600.0)
    delays = [u.media_delay_ms for u in units]
    assert delays == sorted(delays) and delays[-1] == pytest.approx(2600.0)
    for u in units:
        assert u.text and not u.text.startswith(" ")
        assert 0 <= u.start_ms <= u.end_ms <= u.media_delay_ms
    # committed units are words: pieces (no leading space) were merged into the previous word
    assert all(" " not in u.text for u in units)


def test_committed_words_are_never_retracted(make_streaming):
    model = make_streaming()
    stream = model.create_stream({"policy": "local-agreement", "policy_options": {"n": 1}})
    audio = _audio(2.0, seed=3)
    seen = []
    for i in range(0, len(audio), 8000):
        stream.accept_audio(audio[i : i + 8000])
        while stream.is_ready():
            model.step([stream])
            seen += [d.text for d in stream.pop_result().committed]
    # n=1 commits every complete word at once; the forced prefix holds them from then on
    assert stream.committed_texts == seen
    prefix_words = [w.text for w in stream.window_words if w.text]
    assert prefix_words == seen[-len(prefix_words):] if prefix_words else True


def test_one_encoder_call_for_a_batch_and_same_output_as_alone(make_streaming):
    model = make_streaming()
    audios = [_audio(1.5, seed=s) for s in range(3)]
    alone = []
    for a in audios:
        _, _ = None, None
        session, _ = _run(model, a, {"policy": "local-agreement"}, piece_ms=500)
        alone.append([u.text for u in session.committed])
    model.encoder.calls.clear()
    streams = [model.create_stream({"policy": "local-agreement"}) for _ in audios]
    texts = [[] for _ in audios]
    for i in range(0, len(audios[0]), 8000):
        for s, a in zip(streams, audios):
            s.accept_audio(a[i : i + 8000])
        model.step(streams)
        for t, s in zip(texts, streams):
            t += [d.text for d in s.pop_result().committed]
    for s in streams:
        s.input_finished()
    while any(s.is_ready() for s in streams):
        model.step(streams)
        for t, s in zip(texts, streams):
            t += [d.text for d in s.pop_result().committed]
    assert model.encoder.calls[0] == 3
    assert texts == alone


def test_bad_options_raise_config_errors(make_streaming):
    model = make_streaming()
    with pytest.raises(UnknownPolicyError):
        model.create_stream({"policy": "nope"})
    with pytest.raises(PolicyOptionError):
        model.create_stream({"policy": "alignatt", "policy_options": {"frames": 0}})
    with pytest.raises(ConfigError, match="English-only"):
        model.create_stream({"task": "translate"})
    with pytest.raises(ConfigError, match="unknown stream options"):
        model.create_stream({"polcy": "alignatt"})


def test_long_stream_is_trimmed_and_window_stays_under_the_limit(make_streaming):
    model = make_streaming(stall_reset_s=None)
    stream = model.create_stream({"policy": "local-agreement"})
    audio = _audio(9.0, seed=5)
    limit = int(model.max_window_s * 1000 / model.encoder.frame_ms)
    for i in range(0, len(audio), 8000):
        stream.accept_audio(audio[i : i + 8000])
        while stream.is_ready():
            model.step([stream])
            assert model.encoder.window_frames(stream.encoder_state) <= limit
    stream.input_finished()
    while stream.is_ready():
        model.step([stream])
    assert stream.stats["trims"] + stream.stats["forced_trims"] > 0
    assert stream.window_start_ms > 0
    assert stream.is_done()


def _trimming_streams(model, n, cut_frames, monkeypatch):
    """Streams whose last committed word lies ``cut_frames(window)`` frames into the window (the
    random stand-in model rarely commits); their trims are recorded, not run."""
    streams = [model.create_stream({"policy": "local-agreement"}) for _ in range(n)]
    trims = []
    index = {id(s): b for b, s in enumerate(streams)}
    for module in (whisper_commit, whisper_window):
        monkeypatch.setattr(module, "committed_cut_frames", lambda m, s, keep_words=0: cut_frames(s.window_frames))
        monkeypatch.setattr(module, "trim_at_committed", lambda m, s, keep_words=0, *, defer:
                            trims.append((len(trims), index[id(s)], s.window_frames)))
    return streams, trims


def test_trims_of_a_batch_are_spread_over_steps(make_streaming, monkeypatch):
    """Streams that started together would all trim in the same step (each re-encodes and re-runs
    its prefix); max_trims_per_step spreads them, longest windows first."""
    for budget in (None, 1, 2):
        model = make_streaming(max_trims_per_step=budget, trim_min_drop=0.5, trim_after_s=3.0, stall_reset_s=None)
        streams, trims = _trimming_streams(model, 4, lambda w: w, monkeypatch)
        audio = _audio(7.0, seed=9)
        per_step = []
        for i in range(0, len(audio), 8000):
            for b, s in enumerate(streams):
                if i >= 8000 * b:  # stream b joins b steps later: different window lengths
                    s.accept_audio(audio[i : i + 8000])
            before = len(trims)
            model.step(streams)
            step_trims = trims[before:]
            per_step.append(len(step_trims))
            windows = [w for _, _, w in step_trims]
            assert windows == sorted(windows, reverse=True)
            if budget and step_trims:
                # the budget went to the longest windows among those due
                due = [s.window_frames for s in streams if s.window_frames * 20 > 3000]
                assert min(windows) >= sorted(due, reverse=True)[len(windows) - 1]
        assert max(per_step) == (4 if budget is None else budget)


def test_a_stalled_stream_gets_the_step_s_trim_before_a_longer_window(make_streaming, monkeypatch):
    """A stall holds words back; a long window only costs compute: with one trim per step, the
    stalled stream (the shorter window here) is reset first and the long window waits a step."""
    model = make_streaming(max_trims_per_step=1, trim_min_drop=0.5, trim_after_s=1.0, stall_reset_s=1.0)
    streams, trims = _trimming_streams(model, 2, lambda w: w, monkeypatch)
    long_window, stalled = streams
    resets = []
    for module in (whisper_step, whisper_commit):  # one stall: the reset ends it
        monkeypatch.setattr(module, "stalled", lambda m, s: s is stalled and not resets)
    monkeypatch.setattr(whisper_commit, "reset_stall", lambda m, s: resets.append(len(trims)))
    audio = _audio(3.0, seed=4)
    for i in range(0, len(audio), 8000):
        long_window.accept_audio(audio[i : i + 8000])
        if i >= 16000:  # joins two steps later: its window is the shorter one
            stalled.accept_audio(audio[i : i + 8000])
        before = (len(trims), len(resets))
        model.step([s for s in streams if s.is_ready()])
        if len(resets) > before[1]:
            assert len(trims) == before[0], "the long window trimmed in the stalled stream's step"
    assert resets and trims


def test_a_trim_that_would_drop_little_of_a_long_window_waits(make_streaming, monkeypatch):
    """trim_min_drop: cutting a little off a long window re-encodes the rest for little gain."""
    for cut, expect in ((lambda w: w // 4, False), (lambda w: w // 2, True)):
        model = make_streaming(trim_min_drop=0.5, trim_after_s=3.0, stall_reset_s=None)
        streams, trims = _trimming_streams(model, 1, cut, monkeypatch)
        audio = _audio(5.0, seed=5)
        for i in range(0, len(audio), 8000):
            streams[0].accept_audio(audio[i : i + 8000])
            model.step(streams)
        assert bool(trims) is expect


def test_a_stream_that_writes_nothing_for_long_is_reset(make_streaming):
    """stall_reset_s: the stand-in model rarely commits; instead of waiting for max_window_s the
    window is cut once that much audio follows the last committed word (a pause, or a derailed
    decoder), and never grows much past it."""
    model = make_streaming(stall_reset_s=1.5)
    stream = model.create_stream({"policy": "local-agreement"})
    audio = _audio(8.0, seed=5)
    most = 0
    for i in range(0, len(audio), 8000):
        stream.accept_audio(audio[i : i + 8000])
        while stream.is_ready():
            model.step([stream])
            most = max(most, stream.encoder_window_frames())
    assert stream.stats["stall_resets"] > 0 and stream.stats["forced_trims"] == 0
    assert most * 20 <= 1500 + 500 + 500  # the limit, one chunk before the check, one block


def test_describe_reports_effective_settings(make_streaming):
    d = make_streaming(chunk_ms=250).describe()
    assert d["chunk_ms"] == 250 and d["encoder_mode"] == "stand-in" and d["frame_ms"] == 20.0


def test_no_decode_and_no_vote_when_the_encoder_adds_no_frames(make_streaming):
    """A block-causal encoder emits frames per block: steps in between must not re-decode the same
    window (LocalAgreement would count the identical hypothesis as a second vote)."""
    from types import SimpleNamespace

    import torch

    model = make_streaming()
    enc = model.encoder
    real_step_batch = enc.step_batch
    calls = {"n": 0}

    def every_other(mels, states, *, final=None):
        calls["n"] += 1
        outs = real_step_batch(mels, states, final=final)
        if calls["n"] % 2 and not (final and final[0]):
            # this step's frames are held back (a block is not complete yet)
            return [SimpleNamespace(frames=torch.zeros(0, enc.d_model), start=o.start + o.frames.shape[0]) for o in outs]
        return outs

    enc.step_batch = every_other
    stream = model.create_stream({"policy": "local-agreement", "policy_options": {"n": 2}})
    stream.accept_audio(_audio(2.0, seed=7))
    for _ in range(4):
        model.step([stream])
    assert stream.stats["steps"] == 2  # decoded only on the steps that brought frames


def test_the_prompt_start_stays_put_across_trims_until_it_doubles(make_streaming):
    """Words leaving the window go to the prompt. The prefix keeps the last cap..2*cap prompt
    tokens and drops the older ones in one go, so most trims leave the prompt's start (and the
    decoder's cached rows for it) unchanged; a prompt sliding by a few tokens per trim would
    re-run all of it every time."""
    import torch

    from streamrt.tasks.whisper_hypothesis import prefix as forced_prefix
    from streamrt.tasks.whisper_stream_state import Word

    cap = 8
    model = make_streaming(max_prompt_tokens=cap, stall_reset_s=None)
    stream = model.create_stream({"policy": "local-agreement"})
    stream.accept_audio(_audio(4.0, seed=2))
    while stream.is_ready():
        model.step([stream])
    starts, lengths = [], []
    for k in range(12):
        t = stream.window_start_ms
        stream.window_words = [Word(f"w{k}", [40 + k % 5, 50 + k % 7, 60 + k % 3], t, t + 10.0)]
        with torch.inference_mode():  # as a model step runs it
            whisper_window.cut_window(model, stream, t + 20.0, defer=False)  # the word moves to the prompt
        prefix = forced_prefix(model, stream)
        n_prompt = prefix.index(stream.sot[0]) - 1
        lengths.append(n_prompt)
        starts.append(tuple(prefix[1:4]))
    assert lengths[:3] == [3, 6, 9] and max(lengths) <= 2 * cap and min(lengths[3:]) >= cap
    moves = sum(a != b for a, b in zip(starts, starts[1:]))
    assert moves <= 36 // cap, (starts, lengths)  # 36 tokens added: a drop per cap of them at most


def test_the_trims_of_a_step_run_as_one_batched_re_encode(make_streaming, monkeypatch):
    """commit_from only decides a trim; the model re-encodes every trimming stream's kept window
    in one ``trim_batch`` at the end of the step, and the windows are then the trimmed ones."""
    model = make_streaming(max_trims_per_step=None, trim_min_drop=0.5, trim_after_s=1.0, stall_reset_s=None)
    streams = [model.create_stream({"policy": "local-agreement"}) for _ in range(3)]

    def trim_half(m, s, keep_words=0, *, defer):  # the stand-in rarely commits: cut the window in half
        whisper_window.cut_window(m, s, s.window_start_ms + s.window_frames // 2 * 20.0, defer=defer)
        s.stats["trims"] += 1

    monkeypatch.setattr(whisper_commit, "committed_cut_frames", lambda m, s, keep_words=0: s.window_frames // 2)
    monkeypatch.setattr(whisper_commit, "trim_at_committed", trim_half)
    calls = []
    real = model.encoder.trim_batch

    def recording(states, keeps):
        calls.append(list(keeps))
        return real(states, keeps)

    model.encoder.trim_batch = recording
    audio = _audio(3.0, seed=6)
    for i in range(0, len(audio), 8000):
        for s in streams:
            s.accept_audio(audio[i : i + 8000])
        before = sum(s.stats["trims"] for s in streams)
        model.step(streams)
        trimmed = sum(s.stats["trims"] for s in streams) - before
        if trimmed:
            assert len(calls[-1]) == trimmed  # one call for all of this step's trims
            for s in streams:
                assert s.take_pending_trim() is None
                assert model.encoder.window_frames(s.encoder_state) == s.cache.n_valid  # the decoder saw the trim
    assert calls and max(len(c) for c in calls) == 3


@pytest.mark.parametrize("name", ["max_loop_iterations", "max_trims_per_step"])
def test_step_limits_below_one_are_config_errors_that_name_the_setting(make_streaming, name):
    with pytest.raises(ConfigError, match=f"{name} must be >= 1 or None, got 0"):
        make_streaming(**{name: 0})


def test_the_loop_iteration_limit_reaches_the_decoder_but_not_the_last_decode(make_streaming, monkeypatch):
    # the end of the stream commits the whole hypothesis: its decode must run to the end
    model = make_streaming(max_loop_iterations=3)
    seen = []
    real = model.decoder.greedy_many
    monkeypatch.setattr(model.decoder, "greedy_many",
                        lambda reqs: seen.extend(r.max_iterations for r in reqs) or real(reqs))
    _run(model, _audio(1.5), {"policy": "alignatt"})
    assert len(seen) >= 2 and set(seen[:-1]) == {3} and seen[-1] is None
