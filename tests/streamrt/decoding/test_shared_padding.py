"""Cross-attention over 30 s-padded windows: the batched token step attends the shared padding rows
once for all streams; it must equal attending each stream's whole cache (``forward``)."""

import copy

import torch

from streamrt.decoding import IncrementalWhisperDecoder
from tests.streamrt.decoding.decoding_helpers import forward_tokens

EOT = 80


def test_shared_padding_attention_equals_whole_cache_attention(tiny_whisper):
    dec = IncrementalWhisperDecoder(tiny_whisper, eot=EOT, alignment_heads=[(1, 0), (1, 2)], max_frames=60)
    torch.manual_seed(5)
    dec.set_padding(torch.randn(60, 32))
    seqs = [[81, 5, 17, 33], [81, 2], [81, 7, 7]]
    caches = [dec.create_cache() for _ in seqs]
    for c, n, s in zip(caches, (20, 9, 0), seqs):
        if n:
            dec.update_cross(c, torch.randn(n, 32), 0)
        else:  # an empty window: padding only
            dec.update_cross(c, torch.zeros(0, 32), 0)
        dec.forward(c, s[:-1], 0)
    assert all(c.n_frames == 60 for c in caches)
    alone = [copy.deepcopy(c) for c in caches]
    logits, rows = forward_tokens(dec, caches, [s[-1] for s in seqs], [len(s) - 1 for s in seqs])
    for b, (c, s) in enumerate(zip(alone, seqs)):
        ref_logits, ref_align = dec.forward(c, s[-1:], len(s) - 1)
        assert torch.allclose(logits[b], ref_logits, atol=1e-4)
        assert torch.allclose(rows[b], ref_align[0], atol=1e-5)
        assert abs(float(rows[b].sum()) - 1.0) < 1e-4
