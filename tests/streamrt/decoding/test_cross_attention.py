"""Window buckets: a batched decode gathers each stream's own frames padded only to its bucket's
longest window. Results must equal one stream at a time, whatever the buckets and however the
token loop's batch shrinks across them."""

import numpy as np
import pytest
import torch

import streamrt.decoding.batch_greedy as bg
import streamrt.decoding.cross_attention as ca
from streamrt.decoding import DecodeRequest, IncrementalWhisperDecoder
from streamrt.decoding.batch_state import BatchDecodeState
from streamrt.decoding.cross_attention import contiguous_groups

EOT = 80


@pytest.fixture
def dec(tiny_whisper):
    return IncrementalWhisperDecoder(tiny_whisper, eot=EOT, alignment_heads=[(1, 0), (1, 2)], max_frames=60)


def test_groups_keep_padding_under_the_waste_bound_or_the_free_allowance():
    # [10, 11, 12]: padded to 36 for 33 real (9 %); adding 40 pads to 160 for 73 (119 %)
    assert contiguous_groups([10, 11, 12, 40, 41], 0.25, 0) == [slice(0, 3), slice(3, 5)]
    assert contiguous_groups([10, 40], 0.25, 30) == [slice(0, 2)]  # 30 frames of padding are free
    assert contiguous_groups([10, 40], 0.25, 29) == [slice(0, 1), slice(1, 2)]
    assert contiguous_groups([40, 10], 0.25, 0) == [slice(0, 1), slice(1, 2)]  # any order: the running longest
    assert contiguous_groups([], 0.25, 0) == []


@pytest.mark.parametrize("padding", [False, True])
def test_decodes_over_several_window_buckets_equal_one_stream_at_a_time(dec, monkeypatch, padding):
    torch.manual_seed(11)
    if padding:
        dec.set_padding(torch.randn(60, 32))
    # three buckets of windows; within each, prefixes of distinct lengths fix the row order, and the
    # second row leaves first (cap 1): the shrunk batch keeps rows on both sides of it
    windows = [10, 11, 12, 13, 40, 41, 42, 43, 24, 25, 0 if padding else 3]
    caps = [7, 1, 6, 8, 9, 1, 5, 7, 6, 4, 5]
    prefixes = [[81] + [3 + (7 * k + j) % 60 for j in range(k % 4)] for k in range(len(windows))]
    encs = [torch.randn(n, 32) for n in windows]

    def request(enc, prefix, cap):
        c = dec.create_cache()
        dec.update_cross(c, enc, 0)
        return DecodeRequest(c, prefix, cap, False)

    alone = [dec.greedy_many([request(e, p, cap)])[0] for e, p, cap in zip(encs, prefixes, caps)]
    monkeypatch.setattr(ca, "BUCKET_FREE_FRAMES", 0)  # small test windows: split by the ratio alone
    # every forced pass one row: forwards start inside buckets
    monkeypatch.setattr(bg, "_length_groups", lambda lengths: [slice(i, i + 1) for i in range(len(lengths))])
    buckets, holes = [], []
    real_keep = ca.WindowBucket.keep
    monkeypatch.setattr(bg, "window_buckets", lambda own: buckets.append(ca.window_buckets(own)) or buckets[-1])
    monkeypatch.setattr(ca.WindowBucket, "keep", lambda self, rows, lo: holes.append(rows[-1] - rows[0] >= len(rows))
                        or real_keep(self, rows, lo))
    batched = dec.greedy_many([request(e, p, cap) for e, p, cap in zip(encs, prefixes, caps)])
    assert len(buckets[0]) >= 3 and any(holes)  # several buckets; rows left from inside one
    for a, b in zip(alone, batched):
        assert a.tokens == b.tokens and a.stopped_by == b.stopped_by
        assert np.allclose(a.logprobs, b.logprobs, atol=1e-4)
        assert np.allclose(a.attention, b.attention, atol=1e-5)


def test_buckets_gather_each_row_up_to_its_buckets_longest_window(dec):
    caches = [dec.create_cache() for _ in range(4)]
    for c, n in zip(caches, (5, 6, 30, 33)):
        dec.update_cross(c, torch.randn(n, 32), 0)
    state = BatchDecodeState(dec, caches, [0] * 4, 4, [slice(0, 2), slice(2, 4)])
    assert [bk.k.shape[3] for bk in state.buckets] == [6, 33]
    assert torch.equal(state.buckets[1].k[:, 0, :, :30], caches[2].cross_k[:, :, :30])
    state.select([0, 3])  # one row left in each bucket, each cut to its own window
    assert [(bk.lo, bk.k.shape[1], bk.k.shape[3]) for bk in state.buckets] == [(0, 1, 5), (1, 1, 33)]
    assert torch.equal(state.buckets[1].k[:, 0], caches[3].cross_k[:, :, :33])
    with pytest.raises(ValueError, match="do not cover"):
        BatchDecodeState(dec, caches, [0] * 4, 4, [slice(0, 2), slice(3, 4)])
    with pytest.raises(ValueError, match="ascending"):
        state.select([1, 0])
