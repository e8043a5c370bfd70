"""Beam search batched across streams (``streamrt.decoding.beam_search``) against a straightforward
reference written here: one stream, one hypothesis at a time, every next-token distribution from a
full forward of prefix + hypothesis (``IncrementalWhisperDecoder.forward``), and Whisper's
BeamSearchDecoder rules (beam_size + 1 candidates per beam, ranked by sum of log-probabilities;
ended ones kept while ranked above the last live one, up to round(beam_size * patience); the best
ended by sum of log-probabilities over the length penalty)."""

import math

import numpy as np
import pytest
import torch

from streamrt.decoding import BeamSettings, DecodeRequest, IncrementalWhisperDecoder, RepetitionGuard
import streamrt.decoding.beam_search as bs
from streamrt.decoding.beam_search import beam_batch
from tests.streamrt.random_whisper import random_whisper

EOT, SOT = 80, 81


@pytest.fixture(scope="module")
def eot_model():
    """tiny_whisper's shape with larger weights (init_std 0.2: at 0.02 every window gives the same
    tokens), and end-of-text made likely enough that some beams end on it: its vocabulary row is
    a sum of frequent tokens' rows."""
    model = random_whisper(
        seed=5, vocab_size=96, num_mel_bins=8, d_model=32, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=60, max_target_positions=40, pad_token_id=EOT, bos_token_id=SOT,
        eos_token_id=EOT, decoder_start_token_id=SOT, init_std=0.2,
    )
    with torch.no_grad():
        model.proj_out.weight[EOT] = 0.35 * model.proj_out.weight[[58, 19, 64, 21]].sum(0)
    return model


@pytest.fixture
def dec(eot_model):
    return IncrementalWhisperDecoder(eot_model, eot=EOT, alignment_heads=[(1, 0), (1, 2)], max_frames=60)


# ---- the reference ---------------------------------------------------------------------------------
def reference_beam(dec, enc, prefix, beam: BeamSettings, max_new, guard=None, stop=None):
    """(tokens, logprobs, attention rows, sum of logprobs, end) of the chosen hypothesis."""
    cache = dec.create_cache()
    dec.update_cross(cache, enc, 0)

    def next_logprobs(tokens):
        logits, align = dec.forward(cache, list(prefix) + list(tokens), 0)
        return torch.log_softmax(logits.float() + dec.logit_mask, -1), align[-1].float()

    K, most = beam.beam_size, round(beam.beam_size * beam.patience)
    live = [((), (), (), 0.0)]  # tokens, logprobs, rows, score
    ended = {}
    why = None
    while True:
        cands = []
        for b, (toks, lps, rows, score) in enumerate(live):
            lp, row = next_logprobs(toks)
            top = lp.topk(K + 1)
            for v, t in zip(top.values.tolist(), top.indices.tolist()):
                if v > -math.inf:
                    cands.append((score + v, b, t, v, row))
        cands.sort(key=lambda c: -c[0])
        new_live, newly = [], []
        for score, b, t, v, row in cands:
            toks, lps, rows, _ = live[b]
            if t == EOT:
                newly.append((toks, lps, rows, score, "eot"))
            else:
                seq = (toks + (t,), lps + (v,), rows + (row,))
                cut = guard.check(list(seq[0])) if guard else None
                if cut is None:
                    new_live.append((*seq, score))
                else:
                    newly.append((seq[0][:cut], seq[1][:cut], seq[2][:cut], sum(seq[1][:cut]), "repetition"))
            if len(new_live) == K:
                break
        for f in sorted(newly, key=lambda f: -f[3]):
            if len(ended) >= most:
                break
            if f[0] not in ended or ended[f[0]][3] < f[3]:
                ended[f[0]] = f
        live = new_live
        if len(ended) >= most or not live:
            break
        if stop is not None and stop(live[0][2][-1]):
            toks, lps, rows, score = live[0]
            return toks, lps, rows, score, "policy"
        if len(live[0][0]) >= max_new:
            why = "max_tokens"
            break
    final = list(ended.values())
    for toks, lps, rows, score in sorted(live, key=lambda h: -h[3]):
        if len(final) >= K:
            break
        final.append((toks, lps, rows, score, None))
    best = max(final, key=lambda f: beam.rank(f[3], len(f[0])))
    return best[0], best[1], best[2], best[3], best[4] or why


def _same_as_reference(res, ref):
    toks, lps, rows, _, end = ref
    assert res.tokens == list(toks)
    assert res.stopped_by == end and res.ended == (end == "eot")
    assert np.allclose(res.logprobs, lps, atol=1e-4)
    if toks:
        assert np.allclose(res.attention, torch.stack(list(rows)).numpy(), atol=1e-5)


def _request(dec, enc, prefix, cap, beam, **kw):
    c = dec.create_cache()
    dec.update_cross(c, enc, 0)
    return DecodeRequest(c, prefix, cap, False, beam=beam, **kw)


# ---- tests -----------------------------------------------------------------------------------------
def test_beam_of_one_is_greedy(dec):
    """beam_size 1 through the beam code gives greedy's tokens, log-probabilities and attention; and
    requests with beam_size 1 take greedy's own path (bit-identical to no beam settings)."""
    torch.manual_seed(0)
    for n, prefix, cap in ((20, [SOT], 9), (33, [SOT, 3, 4], 12), (7, [SOT, 9], 5)):
        enc = torch.randn(n, 32)
        greedy = dec.greedy_many([_request(dec, enc, prefix, cap, None)])[0]
        beam = beam_batch(dec, [_request(dec, enc, prefix, cap, BeamSettings(1))])[0]
        assert beam.tokens == greedy.tokens and beam.stopped_by == greedy.stopped_by
        assert np.allclose(beam.logprobs, greedy.logprobs, atol=1e-5)
        assert np.allclose(beam.attention, greedy.attention, atol=1e-6)
        same = dec.greedy_many([_request(dec, enc, prefix, cap, BeamSettings(1))])[0]
        assert same.tokens == greedy.tokens and same.logprobs == greedy.logprobs
        assert np.array_equal(same.attention, greedy.attention)


@pytest.mark.parametrize("padding", [False, True])
def test_streams_in_one_batch_equal_the_reference_one_at_a_time(dec, padding, monkeypatch):
    """Several streams with different windows, prefixes and token caps, decoded in one batch (the
    finished ones leave it: the batch shrinks), each equal to the reference search."""
    shrinks = []
    real_select = bs._BeamTail.select
    monkeypatch.setattr(bs._BeamTail, "select", lambda self, rows: shrinks.append(len(rows)) or real_select(self, rows))
    torch.manual_seed(3)
    if padding:
        dec.set_padding(torch.randn(60, 32))
    beam = BeamSettings(3)
    windows = [9, 40, 22, 23, 55, 14]
    prefixes = [[SOT], [SOT, 5, 6, 7], [SOT, 11], [SOT, 2, 40, 41, 42, 43, 44], [SOT, 3], [SOT, 60, 61]]
    caps = [10, 6, 12, 3, 11, 1]
    encs = [torch.randn(n, 32) for n in windows]
    batched = dec.greedy_many([_request(dec, e, p, cap, beam) for e, p, cap in zip(encs, prefixes, caps)])
    ends = set()
    for e, p, cap, res in zip(encs, prefixes, caps, batched):
        ref = reference_beam(dec, e, p, beam, cap)
        _same_as_reference(res, ref)
        ends.add(res.stopped_by)
    assert ends == {"eot", "max_tokens"}  # both ways out are exercised
    assert shrinks  # and the batch dropped the finished streams' rows


@pytest.mark.parametrize("beam", [BeamSettings(4, patience=2.0), BeamSettings(3, length_penalty=1.0),
                                  BeamSettings(5, patience=0.5)])
def test_patience_and_length_penalty_follow_the_reference(dec, beam):
    torch.manual_seed(7)
    encs = [torch.randn(n, 32) for n in (18, 30, 45)]
    prefixes = [[SOT], [SOT, 7, 8], [SOT, 20]]
    batched = dec.greedy_many([_request(dec, e, p, 12, beam) for e, p in zip(encs, prefixes)])
    for e, p, res in zip(encs, prefixes, batched):
        ref = reference_beam(dec, e, p, beam, 12)
        assert res.stopped_by in ("eot", "max_tokens", "beam")
        toks, lps, rows, _, _ = ref
        assert res.tokens == list(toks) and np.allclose(res.logprobs, lps, atol=1e-4)


def test_a_repetition_loop_ends_its_beam_cut_to_the_first_copy(dec):
    """A beam whose newest token completes a loop ends, cut back as greedy's guard cuts; the search
    goes on with the other beams. A guard of 1-grams repeated twice fires often here."""
    torch.manual_seed(2)
    guard = RepetitionGuard(max_ngram=2, max_repeats=1)
    beam = BeamSettings(3)
    encs = [torch.randn(n, 32) for n in (25, 31, 12, 50)]
    prefixes = [[SOT], [SOT, 4], [SOT, 9, 10], [SOT, 33]]
    batched = dec.greedy_many([_request(dec, e, p, 14, beam, guard=guard) for e, p in zip(encs, prefixes)])
    for e, p, res in zip(encs, prefixes, batched):
        _same_as_reference(res, reference_beam(dec, e, p, beam, 14, guard=guard))
        assert guard.check(res.tokens) is None


def test_the_policy_stop_rule_ends_a_stream_at_the_best_beams_token(dec):
    """``DecodeRequest.stop`` (stop_at_policy): a stream stops right after the token of its best live
    beam that the rule flags; the result is that beam."""
    torch.manual_seed(4)
    beam = BeamSettings(3)
    encs = [torch.randn(n, 32) for n in (30, 41, 26)]
    prefixes = [[SOT], [SOT, 12], [SOT, 5, 6]]

    def late(n):  # attention peaking in the window's last third
        return lambda row: int(row[:n].argmax()) >= 2 * n // 3

    stops = [late(len(e)) for e in encs]
    batched = dec.greedy_many([_request(dec, e, p, 15, beam, stop=s) for e, p, s in zip(encs, prefixes, stops)])
    seen = set()
    for e, p, s, res in zip(encs, prefixes, stops, batched):
        _same_as_reference(res, reference_beam(dec, e, p, beam, 15, stop=s))
        seen.add(res.stopped_by)
    assert "policy" in seen


def test_an_iteration_limit_lets_the_hypothesis_grow_past_the_last_one(dec):
    """max_iterations under beam search: at most len(draft) + max_iterations loop iterations, the
    draft being the last decode's tokens; so the hypothesis grows step by step to the full search."""
    torch.manual_seed(6)
    enc = torch.randn(35, 32)
    beam = BeamSettings(3)
    full = reference_beam(dec, enc, [SOT, 19], beam, 12)
    assert len(full[0]) >= 6
    c = dec.create_cache()
    dec.update_cross(c, enc, 0)
    lengths = []
    for _ in range(8):
        res = dec.greedy_many([DecodeRequest(c, [SOT, 19], 12, False, max_iterations=2, beam=beam)])[0]
        lengths.append(len(res.tokens))
        if res.stopped_by != "iterations":
            break
    assert lengths[0] == 3  # the prefix's choice and two iterations
    assert all(b > a for a, b in zip(lengths, lengths[1:]))
    _same_as_reference(res, full)


def test_a_zero_token_cap_gives_an_empty_result(dec):
    res = dec.greedy_many([_request(dec, torch.randn(10, 32), [SOT], 0, BeamSettings(3))])[0]
    assert res.tokens == [] and res.stopped_by == "max_tokens" and res.attention.shape == (0, 10)


def test_beam_settings_refuse_nonsense():
    with pytest.raises(ValueError, match="beam_size"):
        BeamSettings(0)
    with pytest.raises(ValueError, match="patience"):
        BeamSettings(3, patience=0)
    with pytest.raises(ValueError, match="length_penalty"):
        BeamSettings(3, length_penalty=-1.0)
