"""The previous decode is verified as a draft in one parallel forward (speculative decoding with the
last hypothesis as the draft): the result must be exactly greedy's, whatever the draft, and a right
draft must save the token-by-token iterations."""

import numpy as np
import pytest
import torch

import streamrt.decoding.batch_greedy as bg
from streamrt.decoding import IncrementalWhisperDecoder
from streamrt.decoding.batch_state import BatchDecodeState
from tests.streamrt.decoding.decoding_helpers import greedy

EOT = 80


@pytest.fixture
def dec(tiny_whisper):
    return IncrementalWhisperDecoder(tiny_whisper, eot=EOT, alignment_heads=[(1, 0), (1, 2)], max_frames=60)


@pytest.fixture
def loop_calls(monkeypatch):
    calls = []
    real = BatchDecodeState.forward

    def counting(state, ids, pos, valid, *forced):
        if not forced:  # an iteration of the token loop (the forced pass names its length groups)
            calls.append(int(valid.sum()))
        return real(state, ids, pos, valid, *forced)

    monkeypatch.setattr(BatchDecodeState, "forward", counting)
    return calls


def _same(a, b):
    assert a.tokens == b.tokens and a.stopped_by == b.stopped_by
    assert np.allclose(a.logprobs, b.logprobs, atol=1e-4)
    assert np.allclose(a.attention, b.attention, atol=1e-5)


def _fresh(dec, enc, prefix, cap):
    c = dec.create_cache()
    dec.update_cross(c, enc, 0)
    return greedy(dec, c, prefix, max_new_tokens=cap, reuse_prefix_kv=False)


def test_a_right_draft_needs_no_token_loop(dec, loop_calls):
    enc = torch.randn(25, 32)
    c = dec.create_cache()
    dec.update_cross(c, enc, 0)
    first = greedy(dec, c, [81, 3], max_new_tokens=6, reuse_prefix_kv=False)
    used = len(loop_calls)
    assert used > 0 and first.tokens
    again = greedy(dec, c, [81, 3], max_new_tokens=6, reuse_prefix_kv=False)
    _same(again, first)
    assert len(loop_calls) == used  # every token came from the verification forward


def test_draft_after_window_extension_and_commit_equals_fresh_decode(dec):
    torch.manual_seed(3)
    enc = torch.randn(30, 32)
    c = dec.create_cache()
    dec.update_cross(c, enc[:12], 0)
    r = greedy(dec, c, [81, 3], max_new_tokens=8, reuse_prefix_kv=False)
    dec.update_cross(c, enc[12:], 12)  # the window grows, as a cached encoder's does
    prefix = [81, 3] + r.tokens[:2]  # two tokens committed since: the draft is the rest
    _same(greedy(dec, c, prefix, max_new_tokens=8, reuse_prefix_kv=False), _fresh(dec, enc, prefix, 8))


def test_a_wrong_draft_changes_nothing_but_the_cost(dec):
    enc = torch.randn(20, 32)
    ref = _fresh(dec, enc, [81], 7)
    c = dec.create_cache()
    dec.update_cross(c, enc, 0)
    c.last_sequence = [81] + [(t + 1) % EOT for t in ref.tokens] + [EOT]
    _same(greedy(dec, c, [81], max_new_tokens=7, reuse_prefix_kv=False), ref)
    c.last_sequence = [81, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, EOT]  # longer than the cap
    _same(greedy(dec, c, [81], max_new_tokens=7, reuse_prefix_kv=False), ref)


def test_drafts_in_a_batch_equal_one_stream_at_a_time(dec):
    from streamrt.decoding import DecodeRequest

    torch.manual_seed(4)
    encs = [torch.randn(n, 32) for n in (14, 26, 9)]
    prefixes = [[81], [81, 3, 4], [81, 9]]
    caches = [dec.create_cache() for _ in encs]
    for c, e in zip(caches, encs):
        dec.update_cross(c, e[: e.shape[0] // 2], 0)
    dec.greedy_many([DecodeRequest(c, p, 6, False) for c, p in zip(caches, prefixes)])
    for c, e in zip(caches, encs):
        h = e.shape[0] // 2
        dec.update_cross(c, e[h:], h)
    batched = dec.greedy_many([DecodeRequest(c, p, 6, False) for c, p in zip(caches, prefixes)])
    for b, e, p in zip(batched, encs, prefixes):
        _same(b, _fresh(dec, e, p, 6))


def test_after_a_trim_the_uncommitted_tail_is_the_draft(dec):
    c = dec.create_cache()
    c.last_sequence, c.last_prefix_len = [81, 3, 10, 11, 12, 13, EOT], 2
    # 10 and 11 were committed and moved into the prompt before the start sequence
    assert bg._draft(c, [79, 10, 11, 81], max_new=8) == [12, 13, EOT]
    # nothing of it in the new prefix: the whole previous output
    assert bg._draft(c, [79, 81], max_new=8) == [10, 11, 12, 13, EOT]
    assert bg._draft(c, [79, 81], max_new=2) == [10, 11, 12]  # max_new tokens and room for an eot


def test_forced_passes_of_several_length_groups_share_one_vocabulary_projection(dec, monkeypatch):
    # ten short prefixes and one long one run as two padded forwards (length groups); their rows
    # get logits from one projection call (each call reads the whole vocabulary matrix), and every
    # stream's result is still its own decode's
    from streamrt.decoding import DecodeRequest

    torch.manual_seed(5)
    encs = [torch.randn(10 + k, 32) for k in range(11)]
    prefixes = [[81, 3 + k] for k in range(10)] + [[81] + [3 + k % 20 for k in range(34)]]
    events, groups = [], []
    real_choices, real_loop, real_groups = bg._choices, BatchDecodeState.forward, bg._length_groups
    monkeypatch.setattr(bg, "_choices", lambda *a: events.append("choices") or real_choices(*a))
    monkeypatch.setattr(BatchDecodeState, "forward",
                        lambda *a: (len(a) == 4 and events.append("loop")) or real_loop(*a))
    monkeypatch.setattr(bg, "_length_groups", lambda *a: groups.append(real_groups(*a)) or groups[-1])
    caches = [dec.create_cache() for _ in encs]
    for c, e in zip(caches, encs):
        dec.update_cross(c, e, 0)
    batched = dec.greedy_many([DecodeRequest(c, p, 4, False) for c, p in zip(caches, prefixes)])
    assert len(groups[0]) == 2
    forced = events[: events.index("loop")] if "loop" in events else events
    assert forced == ["choices"]
    monkeypatch.undo()
    for b, e, p in zip(batched, encs, prefixes):
        _same(b, _fresh(dec, e, p, 4))


def test_a_loop_stopped_by_the_iteration_limit_goes_on_next_decode_exactly(dec, loop_calls):
    # a stream leaves the token loop after max_iterations; its tokens so far are kept and the next
    # decode verifies them as its draft and goes on: the result is what one unlimited decode gives
    from streamrt.decoding import DecodeRequest

    torch.manual_seed(6)
    enc = torch.randn(20, 32)
    ref = _fresh(dec, enc, [81], 9)
    assert len(ref.tokens) >= 4
    c = dec.create_cache()
    dec.update_cross(c, enc, 0)
    before = len(loop_calls)
    first = dec.greedy_many([DecodeRequest(c, [81], 9, False, max_iterations=2)])[0]
    assert len(loop_calls) - before == 2 and first.stopped_by == "iterations"
    assert first.tokens == ref.tokens[: len(first.tokens)]
    _same(dec.greedy_many([DecodeRequest(c, [81], 9, False)])[0], ref)


def test_the_iteration_limit_is_per_stream(dec):
    # a limited stream leaves the batched loop; an unlimited one beside it decodes to its end
    from streamrt.decoding import DecodeRequest

    torch.manual_seed(7)
    encs = [torch.randn(20, 32), torch.randn(18, 32)]
    refs = [_fresh(dec, e, [81], 9) for e in encs]
    assert min(len(r.tokens) for r in refs) >= 4
    caches = [dec.create_cache() for _ in encs]
    for c, e in zip(caches, encs):
        dec.update_cross(c, e, 0)
    limited, free = dec.greedy_many([DecodeRequest(caches[0], [81], 9, False, max_iterations=1),
                                     DecodeRequest(caches[1], [81], 9, False)])
    assert limited.stopped_by == "iterations" and limited.tokens == refs[0].tokens[: len(limited.tokens)]
    _same(free, refs[1])


@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize("split", [False, True])
def test_alignment_rows_of_verified_drafts_equal_the_reference_forward(dec, padding, split, monkeypatch):
    # the forced pass computes alignment weights only for the rows that verify the draft: each
    # token's row must still be the one the plain single-stream forward gives at the position that
    # predicted it, for tokens from the token loop (first decode) and from the draft (second), in
    # one batch of streams with different windows and prefixes; also with one window bucket per
    # stream and the weights computed one batch row at a time (a wrong row offset shows there)
    from streamrt.decoding import DecodeRequest, cross_attention

    if split:
        monkeypatch.setattr(cross_attention, "ALIGN_BLOCK_BYTES", 1)
        monkeypatch.setattr(cross_attention, "BUCKET_MAX_WASTE", 0.0)
        monkeypatch.setattr(cross_attention, "BUCKET_FREE_FRAMES", 0)
    torch.manual_seed(8)
    if padding:
        dec.set_padding(torch.randn(60, 32))
    encs = [torch.randn(n, 32) for n in (23, 9, 40)]
    prefixes = [[81, 7, 9, 11], [81], [81, 5, 6]]
    caches = [dec.create_cache() for _ in encs]
    for c, e in zip(caches, encs):
        dec.update_cross(c, e, 0)
    requests = [DecodeRequest(c, p, 6, False) for c, p in zip(caches, prefixes)]
    first = dec.greedy_many(requests)
    again = dec.greedy_many(requests)
    for e, p, a, b in zip(encs, prefixes, first, again):
        assert len(a.tokens) >= 3 and b.tokens == a.tokens
        ref_cache = dec.create_cache()
        dec.update_cross(ref_cache, e, 0)
        _, ref = dec.forward_hidden(ref_cache, p + a.tokens, 0)
        rows = ref[len(p) - 1 : len(p) - 1 + len(a.tokens)].numpy()
        assert np.allclose(a.attention, rows, atol=1e-5)
        assert np.allclose(b.attention, rows, atol=1e-5)
