import numpy as np
import pytest
import torch

from streamrt.decoding import IncrementalWhisperDecoder, RepetitionGuard
from tests.streamrt.decoding.decoding_helpers import forward_tokens, greedy

EOT = 80


def _decoder(model, **kw):
    return IncrementalWhisperDecoder(model, eot=EOT, alignment_heads=[(1, 0), (1, 2)], max_frames=60, **kw)


def _reference_logits(model, enc, ids):
    with torch.no_grad():
        out = model.model.decoder(input_ids=torch.tensor([ids]), encoder_hidden_states=enc[None], use_cache=False)
        return model.proj_out(out.last_hidden_state)[0]


def test_forward_matches_transformers_decoder(tiny_whisper):
    dec = _decoder(tiny_whisper)
    cache = dec.create_cache()
    enc = torch.randn(20, 32)
    dec.update_cross(cache, enc, 0)
    ids = [81, 5, 17, 33, 2]
    ref = _reference_logits(tiny_whisper, enc, ids)
    logits, att = dec.forward(cache, ids[:3], 0)
    assert torch.allclose(logits, ref[2], atol=1e-4)
    # continuing by position from the cache gives the same as the full pass
    logits, att2 = dec.forward(cache, ids[3:], 3)
    assert torch.allclose(logits, ref[4], atol=1e-4)
    assert att2.shape == (2, 20)
    assert torch.allclose(att2.sum(-1), torch.ones(2), atol=1e-5)


def test_cross_cache_extends_only_new_frames(tiny_whisper):
    dec = _decoder(tiny_whisper)
    full, inc = dec.create_cache(), dec.create_cache()
    enc = torch.randn(30, 32)
    dec.update_cross(full, enc, 0)
    dec.update_cross(inc, enc[:12], 0)
    dec.update_cross(inc, enc[12:], 12)
    assert inc.n_frames == 30
    assert torch.allclose(inc.cross_k[:, :, :30], full.cross_k[:, :, :30], atol=1e-6)
    # a re-based window (start=0, shorter) replaces the rows and shrinks the window
    dec.update_cross(inc, enc[5:15], 0)
    assert inc.n_frames == 10


def test_cross_updates_of_many_streams_equal_one_at_a_time(tiny_whisper):
    """update_cross_many projects every stream's new frames in one product per layer."""
    dec = _decoder(tiny_whisper)
    dec.set_padding(torch.randn(dec.max_frames, 32))
    encs = [torch.randn(n, 32) for n in (9, 0, 14)]
    starts = [0, 0, 6]
    alone = [dec.create_cache() for _ in encs]
    many = [dec.create_cache() for _ in encs]
    first = torch.randn(6, 32)
    for c in alone + many:
        dec.update_cross(c, first, 0)
    for c, e, s in zip(alone, encs, starts):
        dec.update_cross(c, e, s)
    dec.update_cross_many(list(zip(many, encs, starts)))
    for a, m in zip(alone, many):
        assert (a.n_frames, a.n_valid, a.cross_version) == (m.n_frames, m.n_valid, m.cross_version)
        assert torch.allclose(a.cross_k, m.cross_k, atol=1e-6) and torch.allclose(a.cross_v, m.cross_v, atol=1e-6)


def test_greedy_reuses_prefix_rows_and_matches_fresh_decode(tiny_whisper):
    dec = _decoder(tiny_whisper)
    enc = torch.randn(25, 32)
    a, b = dec.create_cache(), dec.create_cache()
    dec.update_cross(a, enc, 0)
    dec.update_cross(b, enc, 0)
    r1 = greedy(dec, a, [81, 3, 4], max_new_tokens=6)
    # the same prefix again: rows reused (cache keeps them) and the result is identical
    before = list(a.token_ids)
    r2 = greedy(dec, a, [81, 3, 4], max_new_tokens=6)
    r_fresh = greedy(dec, b, [81, 3, 4], max_new_tokens=6)
    assert r1.tokens == r2.tokens == r_fresh.tokens
    assert before[:3] == [81, 3, 4]
    assert r1.attention.shape == (len(r1.tokens), 25)
    assert all(t < EOT for t in r1.tokens)  # specials above eot are suppressed


def test_exact_mode_recomputes_prefix_after_window_change(tiny_whisper):
    dec = _decoder(tiny_whisper)
    enc = torch.randn(25, 32)
    keep, exact, fresh = dec.create_cache(), dec.create_cache(), dec.create_cache()
    for c in (keep, exact):
        dec.update_cross(c, enc[:10], 0)
        greedy(dec, c, [81, 3, 4, 5], max_new_tokens=3)
        dec.update_cross(c, enc[10:], 10)
    dec.update_cross(fresh, enc, 0)
    r_exact = greedy(dec, exact, [81, 3, 4, 5], max_new_tokens=5, reuse_prefix_kv=False)
    r_fresh = greedy(dec, fresh, [81, 3, 4, 5], max_new_tokens=5)
    assert r_exact.tokens == r_fresh.tokens
    assert np.allclose(r_exact.logprobs, r_fresh.logprobs, atol=1e-4)
    r_keep = greedy(dec, keep, [81, 3, 4, 5], max_new_tokens=5, reuse_prefix_kv=True)
    assert keep.token_ids[:4] == [81, 3, 4, 5]
    assert len(r_keep.tokens) <= 5


def test_suppressed_tokens_never_generated(tiny_whisper):
    dec0 = _decoder(tiny_whisper)
    c = dec0.create_cache()
    dec0.update_cross(c, torch.randn(20, 32), 0)
    first = greedy(dec0, c, [81], max_new_tokens=8).tokens
    assert first
    dec = _decoder(tiny_whisper, suppress_tokens=[first[0]])
    c = dec.create_cache()
    dec.update_cross(c, torch.randn(20, 32), 0)
    assert first[0] not in greedy(dec, c, [81], max_new_tokens=8).tokens


def test_max_new_tokens_caps_the_tail(tiny_whisper):
    dec = _decoder(tiny_whisper)
    c = dec.create_cache()
    dec.update_cross(c, torch.randn(20, 32), 0)
    r = greedy(dec, c, [81], max_new_tokens=2)
    assert len(r.tokens) <= 2


def test_repetition_guard_cuts_loops_to_first_occurrence():
    g = RepetitionGuard(max_ngram=4, max_repeats=3)
    assert g.check([1, 2, 3, 4]) is None
    assert g.check([9, 5, 5, 5]) is None
    assert g.check([9, 5, 5, 5, 5]) == 2
    assert g.check([9, 1, 2, 1, 2, 1, 2, 1, 2]) == 3
    assert g.check([1, 2, 1, 2, 1, 2]) is None


def test_batched_token_loop_matches_one_stream_at_a_time(tiny_whisper):
    from streamrt.decoding import DecodeRequest

    dec = _decoder(tiny_whisper)
    torch.manual_seed(1)
    encs = [torch.randn(n, 32) for n in (12, 25, 7)]
    prefixes = [[81], [81, 3, 4], [81, 9]]
    caps = [6, 9, 3]
    alone = []
    for enc, p, cap in zip(encs, prefixes, caps):
        c = dec.create_cache()
        dec.update_cross(c, enc, 0)
        alone.append(greedy(dec, c, p, max_new_tokens=cap))
    caches = [dec.create_cache() for _ in encs]
    for c, enc in zip(caches, encs):
        dec.update_cross(c, enc, 0)
    batched = dec.greedy_many([DecodeRequest(c, p, cap) for c, p, cap in zip(caches, prefixes, caps)])
    for a, b in zip(alone, batched):
        assert a.tokens == b.tokens and a.stopped_by == b.stopped_by
        assert np.allclose(a.logprobs, b.logprobs, atol=1e-4)
        assert np.allclose(a.attention, b.attention, atol=1e-5)


def test_one_token_batched_forward_matches_transformers(tiny_whisper):
    dec = _decoder(tiny_whisper)
    encs = [torch.randn(20, 32), torch.randn(9, 32)]
    seqs = [[81, 5, 17, 33], [81, 2]]
    caches = [dec.create_cache() for _ in encs]
    for c, e, s in zip(caches, encs, seqs):
        dec.update_cross(c, e, 0)
        dec.forward(c, s[:-1], 0)
    logits, rows = forward_tokens(dec, caches, [s[-1] for s in seqs], [len(s) - 1 for s in seqs])
    for b, (e, s) in enumerate(zip(encs, seqs)):
        assert torch.allclose(logits[b], _reference_logits(tiny_whisper, e, s)[-1], atol=1e-4)
        assert rows[b].shape == (e.shape[0],)
