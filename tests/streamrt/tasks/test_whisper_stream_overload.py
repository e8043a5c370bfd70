"""Overload costs latency, never words (issue 16, part 6), on the stand-in model with a scripted
decoder: what the window does when a policy writes late (long steps of the degradation ladder, a
loop the guards hide), when the decoder derails after a trim, and when a client sends far faster
than the model steps. Cuts of the window (stall resets, forced trims at max_window_s) may only
drop audio whose words are committed or that the decoder would not transcribe; a derailed decode
first loses its context, not audio; a backlog is worked off one chunk per step, after the end of
input too. The real-speech runs under an overloaded scheduler are in
tests/streamrt/server/test_server_overload.py."""

import numpy as np
import pytest

from streamrt.decoding import DecodeResult
from streamrt.tasks.whisper_window import stalled
from tests.streamrt.tasks.conftest import EOT, SOT

SR = 16000
WORD_MS = 1000.0  # the scripted speaker says word k during [k * WORD_MS, k * WORD_MS + 500)
N_WORDS = 19  # token ids 4k+1 < EOT (80): the toy tokenizer writes them " w{4k+1}", one word each


def _word_id(k: int) -> int:
    return 4 * k + 1


def _audio(seconds, seed=0):
    return np.random.default_rng(seed).standard_normal(int(seconds * SR)).astype(np.float32) * 0.1


DERAIL_ID = 77  # " w77": no word of the script


class ScriptedHearing:
    """Stands in for ``model.decoder.greedy_many``: each decode "hears" exactly the words whose
    audio lies whole in the stream's window and that are not in its forced prefix or prompt, with
    the alignment attention on their first frame. Deterministic, so what a cut drops is known.

    ``derails``: while the decode has a prompt (committed text before the window, after a trim) it
    says one word that was never spoken at the window's start and ends, as Whisper does when the
    prompt misleads it ("...along the northern" -> "room.")."""

    def __init__(self, stream, derails: bool = False):
        self.stream = stream
        self.derails = derails
        self.decodes = 0
        self.derailed = 0

    def __call__(self, requests):
        assert all(r.cache is self.stream.cache for r in requests)
        self.decodes += len(requests)
        return [self._hear(r) for r in requests]

    def _hear(self, req):
        s = self.stream
        frame_ms = s.model.encoder.frame_ms
        n = s.encoder_window_frames()
        start, end = s.window_start_ms, s.window_start_ms + n * frame_ms
        if self.derails and s.model.sot_prev in req.prefix:
            self.derailed += 1
            att = np.zeros((1, max(n, 1)), np.float32)
            att[0, 0] = 1.0
            return DecodeResult([DERAIL_ID], [0.0], att, True, "eot")
        heard = [k for k in range(N_WORDS) if start <= k * WORD_MS and k * WORD_MS + 500 <= end
                 and _word_id(k) not in req.prefix]
        att = np.zeros((len(heard), max(n, 1)), np.float32)
        for i, k in enumerate(heard):
            att[i, int((k * WORD_MS - start) // frame_ms)] = 1.0
        return DecodeResult([_word_id(k) for k in heard], [0.0] * len(heard), att, True, "eot")


def _spoken(seconds: float) -> list[str]:
    return [f"w{_word_id(k)}" for k in range(N_WORDS) if k * WORD_MS + 500 <= seconds * 1000]


def _run_scripted(model, monkeypatch, seconds, *, policy_n, stride=1, chunk_scale=1, derails=False):
    stream = model.create_stream({"policy": "local-agreement", "policy_options": {"n": policy_n}})
    hearing = ScriptedHearing(stream, derails)
    monkeypatch.setattr(model.decoder, "greedy_many", hearing)
    if chunk_scale != 1:
        model.set_chunk_ms(model.chunk_ms * chunk_scale)
    model.set_policy_stride(stride)
    audio = _audio(seconds, seed=3)
    words = []
    for i in range(0, len(audio), SR // 2):
        stream.accept_audio(audio[i : i + SR // 2])
        while stream.is_ready():
            model.step([stream])
            words += [u.text for u in stream.pop_result().committed]
    stream.input_finished()
    while stream.is_ready():
        model.step([stream])
        words += [u.text for u in stream.pop_result().committed]
    assert stream.is_done()
    assert not derails or hearing.derailed
    return stream, words


@pytest.mark.parametrize("stall_reset_s", [1.0, None])
def test_a_policy_that_never_agrees_loses_no_word_to_stall_resets_or_forced_trims(make_streaming, monkeypatch,
                                                                                 stall_reset_s):
    """LocalAgreement with n far above the number of decodes writes nothing before the end: the
    window stalls (no committed word in it, words heard) and reaches max_window_s again and again.
    A stall reset may only drop audio before the first heard word; a forced trim commits every
    heard word it cuts into. The transcript is then every word spoken."""
    model = make_streaming(chunk_ms=500, stall_reset_s=stall_reset_s)  # max_window_s 5.8, forced_keep_s 2
    stream, words = _run_scripted(model, monkeypatch, 18.0, policy_n=1000)
    assert words == _spoken(18.0)
    assert stream.stats["forced_trims"] >= 3


@pytest.mark.parametrize("chunk_scale, stride", [(2, 1), (4, 1), (4, 2)])
def test_the_ladder_s_longer_steps_lose_no_word(make_streaming, monkeypatch, chunk_scale, stride):
    """The degradation ladder's rungs (chunk x2, chunk x4, policy stride 2) on a policy that needs
    two decodes to agree: a decode covers 1-4 s of audio, more than stall_reset_s, and the first
    sight of a word must not be taken for a stall that cuts it away."""
    model = make_streaming(chunk_ms=500, stall_reset_s=1.0)
    stream, words = _run_scripted(model, monkeypatch, 18.0, policy_n=2, stride=stride, chunk_scale=chunk_scale)
    assert words == _spoken(18.0)
    assert stream.stats["stall_resets"] == 0


@pytest.mark.parametrize("chunk_scale, stride", [(1, 1), (4, 2)])
def test_a_decoder_derailed_by_its_prompt_loses_its_context_not_the_audio(make_streaming, monkeypatch,
                                                                          chunk_scale, stride):
    """After every trim the decoder says one unspoken word at the window's start and nothing more
    (the prompt misleads it). The stall reset drops the prompt, not the audio, and the decoder
    hears the window again; a stream that ends while derailed decodes its last window once more
    without the prompt. Every word is committed, and the unspoken one never."""
    model = make_streaming(chunk_ms=500, stall_reset_s=0.8, trim_after_s=3.0, trim_min_drop=0.2)
    stream, words = _run_scripted(model, monkeypatch, 18.0, policy_n=2, stride=stride, chunk_scale=chunk_scale,
                                  derails=True)
    assert words == _spoken(18.0)
    assert stream.stats["stall_resets"] >= 1


def test_the_stall_limit_grows_with_the_audio_a_decode_covers(make_streaming, monkeypatch):
    """While the decoder follows the audio to the window's end, a stall is ``stall_reset_s`` of
    audio per configured step: at 4x the chunk, 4x the audio. A decoder that hears nothing (a
    pause, a derail) stalls after ``stall_reset_s`` at any step length."""
    model = make_streaming(chunk_ms=500, stall_reset_s=1.0)
    assert model.decode_stretch() == 1.0
    model.set_chunk_ms(2000)
    assert model.decode_stretch() == 4.0
    model.set_policy_stride(2)
    assert model.decode_stretch() == 8.0
    model.set_policy_stride(1)
    stream = model.create_stream({"policy": "local-agreement", "policy_options": {"n": 1000}})
    hearing = ScriptedHearing(stream)
    monkeypatch.setattr(model.decoder, "greedy_many", hearing)
    stream.accept_audio(_audio(3.0))
    model.step([stream])  # 2 s in the window, words heard to its end, nothing committed
    assert stream.encoder_window_frames() * 20 == 2000 and not stalled(model, stream)
    model.set_chunk_ms(500)
    assert stalled(model, stream)  # 2 s without a commit: 4 decodes at 500 ms
    model.set_chunk_ms(2000)
    monkeypatch.setattr(model.decoder, "greedy_many",
                        lambda reqs: [DecodeResult([], [], np.zeros((0, 1), np.float32), True, "eot") for _ in reqs])
    stream.accept_audio(_audio(2.0))
    model.step([stream])  # the same at 2 s steps from a decoder that heard nothing
    assert stream.stats["stall_resets"] == 1 and stream.encoder_window_frames() * 20 <= 500


def test_the_policy_stride_grows_the_stall_limit_only_for_a_policy_that_needs_several_decodes(make_streaming,
                                                                                               monkeypatch):
    """At chunk x4 with policy stride 2 a decode covers 8 configured steps of audio. LocalAgreement-n
    still holds back n - 1 such intervals after a decode, so its stall limit grows by chunk x stride;
    a policy that writes what one decode heard (AlignAtt: ``decodes_to_commit() == 1``) holds back
    only audio it has not heard, so its limit grows by the chunk alone: scaled by the stride too
    (16 s at stall_reset_s 2 s), a derailed decode's hallucination held two_cities' window and its
    last words were lost (docs/benchmarks.md)."""
    model = make_streaming(chunk_ms=500, stall_reset_s=1.0)
    model.set_chunk_ms(2000)
    model.set_policy_stride(2)
    assert model.decode_stretch() == 8.0  # the token loop's cap still grows with chunk x stride
    assert model.stall_stretch(1) == 4.0 and model.stall_stretch(2) == 8.0
    waiting = {
        "agreement": model.create_stream({"policy": "local-agreement", "policy_options": {"n": 1000}}),
        "one decode": model.create_stream({"policy": "alignatt", "policy_options": {"frames": 100000}}),
    }
    for stream in waiting.values():  # neither policy writes; the decoder hears every word to the end
        assert stream.policy.decodes_to_commit() == (1000 if stream is waiting["agreement"] else 1)
        monkeypatch.setattr(model.decoder, "greedy_many", ScriptedHearing(stream))
        stream.accept_audio(_audio(4.5))
        model.step([stream])  # skipped by the stride: the encoder only
        model.step([stream])  # decoded: 4 s in the window, nothing committed
        assert stream.encoder_window_frames() * 20 == 4000 and stream.stats["steps"] == 1
    assert not stalled(model, waiting["agreement"])  # 4 s < 8 x 1 s
    assert stalled(model, waiting["one decode"])  # 4 s >= 4 x 1 s


def test_a_trim_keeps_the_last_committed_word_in_the_window(make_streaming, monkeypatch):
    """``trim_keep_words=1``: a trim at the committed words cuts before the last one, which stays in
    the window as forced prefix with its audio, so the decoder hears the uncommitted audio after
    speech it has the text of (a window cut to start abruptly at "the present period" was decoded
    as "the season of death"). Every decode after a trim has a committed word in its forced
    prefix; every word is committed once."""
    model = make_streaming(chunk_ms=500, stall_reset_s=None, trim_keep_words=1)
    stream = model.create_stream({"policy": "local-agreement", "policy_options": {"n": 1}})
    hearing = ScriptedHearing(stream)
    prefixes = []

    def hear(requests):
        prefixes.extend(list(r.prefix) for r in requests)
        return hearing(requests)

    monkeypatch.setattr(model.decoder, "greedy_many", hear)
    audio = _audio(18.0, seed=3)
    words = []
    for i in range(0, len(audio), SR // 2):
        stream.accept_audio(audio[i : i + SR // 2])
        while stream.is_ready():
            model.step([stream])
            words += [u.text for u in stream.pop_result().committed]
    stream.input_finished()
    while stream.is_ready():
        model.step([stream])
        words += [u.text for u in stream.pop_result().committed]
    assert words == _spoken(18.0)
    assert stream.stats["trims"] >= 3
    after_trims = [p for p in prefixes if model.sot_prev in p]  # a prompt: the window was trimmed
    assert after_trims and all(p.index(SOT) < len(p) - 1 for p in after_trims)


def test_trim_keep_words_must_be_a_count_of_words(make_streaming):
    from streamrt.errors import ConfigError

    with pytest.raises(ConfigError, match="trim_keep_words must be an integer >= 0"):
        make_streaming(trim_keep_words=-1)


def test_a_chunk_longer_than_the_window_room_is_refused(make_streaming):
    from streamrt.errors import ConfigError

    model = make_streaming(chunk_ms=500)  # max_window_s 5.8 - forced_keep_s 2.0 = 3.8 s of room
    model.set_chunk_ms(3800)
    with pytest.raises(ConfigError, match="max_window_s - forced_keep_s"):
        model.set_chunk_ms(4000)


def test_a_backlog_at_the_end_of_input_is_stepped_one_chunk_at_a_time(make_streaming):
    """A client that sent far faster than real time stops with seconds of audio not yet stepped:
    it is worked off one chunk per step, so the window never passes max_window_s (the real encoder
    raises past it: "1601 frames is over the limit of 1500 frames") and the last decode covers no
    more new audio than any other (one over a 10 s backlog hallucinated the tail); the last step
    still takes the last sample and ends the stream."""
    model = make_streaming(chunk_ms=500, stall_reset_s=None)  # max_window_s 5.8
    limit = int(model.max_window_s * 1000 / model.encoder.frame_ms)
    stream = model.create_stream({"policy": "local-agreement"})
    audio = _audio(9.2, seed=7)
    stream.accept_audio(audio[: 4 * SR])
    for _ in range(6):  # 3 s stepped, 1 s left over
        model.step([stream])
    stream.accept_audio(audio[4 * SR :])  # 5.2 s more arrive at once, then the end of input
    stream.input_finished()
    taken = []
    while stream.is_ready():
        before = stream.consumed_ms
        model.step([stream])
        taken.append(stream.consumed_ms - before)
        assert stream.encoder_window_frames() <= limit
    assert stream.is_done() and stream.consumed_ms == 9200
    assert taken == [500] * 12 + [200]  # a chunk per step, the remainder last

    short = model.create_stream({"policy": "local-agreement"})
    short.accept_audio(audio[: 3 * SR])
    short.input_finished()
    steps = 0
    while not short.is_done():
        model.step([short])
        steps += 1
    assert short.consumed_ms == 3000 and steps == 6
