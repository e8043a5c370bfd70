"""Cross-attention of one batched decoder forward: each stream's own frames and the shared padding.

A decode's streams have windows of very different lengths (a stream just trimmed holds 5 s, one
about to be trimmed 20 s), and the token loop is bound by the bytes of keys and values it reads. So
the batch's own frames are gathered in *window buckets*: contiguous batch rows whose windows are
padded to their bucket's longest only (``window_buckets``), not to the batch's longest. Every
attention runs per bucket on views; rows past a stream's window are masked.

Streams padded to 30 s keep sharing the padding rows (``dec.pad_k``): the real queries, flattened
into one sequence, attend them once for the whole batch, and the two softmaxes (own frames, padding)
are merged by their log-sum-exp; the alignment heads' weights are rebuilt from the merged one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from streamrt.decoding.kv_cache import DecoderCache
from streamrt.decoding.numerics import exp_floored

if TYPE_CHECKING:
    from streamrt.decoding.batch_state import BatchDecodeState
    from streamrt.decoding.whisper_decoder import IncrementalWhisperDecoder

# a bucket's padding (its rows padded to its longest window) is kept below this fraction of its real
# frames, or below this many frames in all (one more bucket costs a few small kernels per layer)
BUCKET_MAX_WASTE = 0.25
BUCKET_FREE_FRAMES = 256
# the alignment heads' weights of a forced pass are computed for this many bytes of float32 keys at
# a time (within the L2 cache)
ALIGN_BLOCK_BYTES = 1 << 20


def contiguous_groups(lengths: Sequence[int], max_waste: float, free_padding: int) -> list[slice]:
    """Split ``lengths`` (in their order) into contiguous groups whose padding to the group's
    longest adds at most ``max_waste`` of the group's real length, or at most ``free_padding`` in
    all. Ascending input gives the fewest groups."""
    groups, a, longest, real = [], 0, 0, 0
    for b, n in enumerate(lengths):
        top, tot = max(longest, n), real + n
        padded = (b - a + 1) * top
        if b > a and padded > (1 + max_waste) * tot and padded - tot > free_padding:
            groups.append(slice(a, b))
            a, top, tot = b, n, n
        longest, real = top, tot
    if len(lengths):
        groups.append(slice(a, len(lengths)))
    return groups


def window_buckets(own_frames: Sequence[int]) -> list[slice]:
    """Window buckets of batch rows with these own-frame counts (sort the rows by them first)."""
    return contiguous_groups(own_frames, BUCKET_MAX_WASTE, BUCKET_FREE_FRAMES)


def own_frames(dec: "IncrementalWhisperDecoder", cache: DecoderCache) -> int:
    """The cache rows a batched decode gathers: the window's own frames (padding rows after them
    are the shared ``dec.pad_k``), or every row of an unpadded window."""
    return cache.n_valid if padded_window(dec, cache) else cache.n_frames


def padded_window(dec: "IncrementalWhisperDecoder", cache: DecoderCache) -> bool:
    return dec.pad_k is not None and cache.n_frames == cache.max_frames == dec.max_frames


class WindowBucket:
    """Batch rows [lo, hi): their own frames' keys and values (layers, rows, heads, F, head_dim),
    F the bucket's longest window; ``ok`` (rows, F) marks each row's own frames."""

    def __init__(self, lo: int, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor):
        self.lo, self.k, self.v = lo, k, v
        self._set_lengths(lengths)

    @classmethod
    def gather(cls, dec: "IncrementalWhisperDecoder", caches: Sequence[DecoderCache], lengths: Sequence[int],
               lo: int) -> "WindowBucket":
        fo, dtype = max(lengths), dec.cross_dtype
        # every row up to the bucket's longest window, one copy per tensor: a row's frames past its
        # own are its cache's padding or older frames, masked, and finite as attention needs (caches
        # start zeroed and only ever hold projections). Alone, one stack of views copied 32 streams
        # in 12-15 ms against 22-23 ms for a copy of each stream's own frames plus zeroed tails;
        # inside a decode (A/B by step, 32 bench streams) the gather took the same time (41-42 ms)
        k = torch.stack([c.cross_k[:, :, :fo].to(dtype) for c in caches], dim=1)
        v = torch.stack([c.cross_v[:, :, :fo].to(dtype) for c in caches], dim=1)
        return cls(lo, k, v, torch.tensor(list(lengths), dtype=torch.long))

    def _set_lengths(self, lengths: torch.Tensor) -> None:
        self.lengths = lengths
        self.fo = int(lengths.max()) if len(lengths) else 0
        self.ok = torch.arange(self.fo)[None, :] < lengths[:, None]  # (rows, fo)

    @property
    def hi(self) -> int:
        return self.lo + len(self.lengths)

    def keep(self, rows: list[int], lo: int) -> None:
        """Keep bucket rows ``rows`` (ascending), now batch rows [lo, lo + len(rows)): one copy of
        their frames (up to their longest window), which every later iteration then reads as views."""
        self.lo = lo
        if rows == list(range(len(self.lengths))):
            return
        idx = torch.as_tensor(rows, dtype=torch.long)
        lengths = self.lengths[idx]
        fo = int(lengths.max())
        if rows == list(range(rows[0], rows[0] + len(rows))):  # a run of rows: views
            run = slice(rows[0], rows[0] + len(rows))
            self.k, self.v = self.k[:, run, :, :fo], self.v[:, run, :, :fo]
        else:
            self.k, self.v = self.k[:, idx, :, :fo], self.v[:, idx, :, :fo]
        self._set_lengths(lengths)


class _Part:
    """The rows [a, b) of one forward (local) that bucket rows [ba, bb) hold, with their masks."""

    def __init__(self, bucket: WindowBucket, a: int, b: int, ba: int, dtype: torch.dtype,
                 align_from: torch.Tensor | None):
        self.bucket, self.a, self.b, self.ba, self.bb = bucket, a, b, ba, ba + (b - a)
        self.fo = bucket.fo
        ok = bucket.ok[ba : self.bb]
        self.mask = additive_mask(ok[:, None, None, :], dtype)  # (n, 1, 1, fo)
        self.no_own = ~ok.any(1)[:, None, None]
        self.any_no_own = bool(self.no_own.any())
        # the first query of these rows whose alignment weights are needed
        self.align_j0 = 0 if align_from is None else int(align_from[a:b].min().clamp(min=0))

    def kv(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        bk = self.bucket
        return bk.k[i][self.ba : self.bb], bk.v[i][self.ba : self.bb]


class CrossContext:
    """Cross-attention of one forward over the batch rows ``rows`` (a slice): each stream's own
    frames, per window bucket, and the shared 30 s padding."""

    def __init__(self, state: "BatchDecodeState", rows: slice, bi: torch.Tensor, ji: torch.Tensor, G: int, Tq: int,
                 align_from: torch.Tensor | None = None):
        self.state, self.rows, self.bi, self.ji, self.G, self.Tq = state, rows, bi, ji, G, Tq
        self.all_valid = len(bi) == G * Tq
        # the real queries whose alignment weights are needed (index into bi/ji), or None: all
        self.align_sel = None if align_from is None else (ji >= align_from[bi]).nonzero(as_tuple=True)[0]
        dec = state.dec
        self.dtype = dec.cross_dtype
        start = rows.start or 0
        stop = start + G
        self.parts = [
            _Part(bk, max(bk.lo, start) - start, min(bk.hi, stop) - start, max(bk.lo, start) - bk.lo, self.dtype,
                  align_from)
            for bk in state.buckets if bk.lo < stop and bk.hi > start
        ]
        self.Fo = max((p.fo for p in self.parts), default=0)
        pad_ok = state.pad_ok[rows]
        self.Fp = pad_ok.shape[1]
        self.frames = max(self.Fo, self.Fp, 1)
        no_own = torch.cat([p.no_own for p in self.parts]) if self.parts else torch.ones(G, 1, 1, dtype=torch.bool)
        self.use_pad = state.use_pad and bool(len(bi))
        if self.use_pad:
            self.pad_k, self.pad_v = dec.padding_kv(self.dtype)
            self.pad_k_f32 = dec.padding_keys_float32(self.dtype)  # alignment weights (see _align)
            self.pad_mask = additive_mask(pad_ok[bi][None, None], self.dtype)  # (1, 1, N, Fp), per real query
            self.no_pad = ~pad_ok.any(1)[:, None, None]
        self.any_no_pad = self.use_pad and bool(self.no_pad.any())
        # a stream with neither own frames nor padding: its softmax is empty (NaN), zeroed
        self.any_empty = bool((no_own & self.no_pad).any()) if self.use_pad else bool(no_own.any())

    def attend(self, i: int, q: torch.Tensor, align: torch.Tensor) -> torch.Tensor:
        """Layer ``i``'s cross-attention output for queries ``q`` (G, heads, Tq, head_dim); adds the
        alignment heads' weights to ``align`` (G, Tq, frames)."""
        # one path for every forward, the token loop's one query per stream included: an explicit
        # softmax over [own frames, padding] per bucket for the loop was 5-11 % slower per decode
        # (8-32 streams, torch 2.13) than these fused kernels with the weights rebuilt in _align
        qc = q.to(self.dtype)
        o = lse = None  # (G, H, Tq, hd), (G, H, Tq)
        if self.Fo:
            o, lse = self._attend_own(i, qc)
        if self.use_pad:
            o2, l2 = self._attend_padding(i, qc)
            if self.any_no_pad:
                l2 = l2.masked_fill(self.no_pad, float("-inf"))
            if o is None:
                o, lse = o2, l2
            else:  # merge the two softmaxes: part 1 weighs sigmoid(l1 - l2)
                a = torch.sigmoid(lse - l2)
                o = o2 + a.unsqueeze(-1) * (o - o2)
                lse = torch.logaddexp(lse, l2)
        if o is None:
            return torch.zeros_like(q)
        if self.any_empty:
            o = torch.nan_to_num(o, nan=0.0)  # no frames at all: zero output, as an empty window gives
        heads = _index(self.state.dec._heads_by_layer.get(i))
        if heads is not None:
            self._align(i, qc[:, heads], lse[:, heads].unsqueeze(-1), heads, align)
        return o.to(q.dtype)

    def _attend_own(self, i: int, qc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Own frames, bucket by bucket: (output float32 (G, H, Tq, hd), log-sum-exp (G, H, Tq));
        a row without own frames gets output 0 and log-sum-exp -inf."""
        outs, lses = [], []
        for p in self.parts:
            qp = qc[p.a : p.b]
            if p.fo:
                k, v = p.kv(i)
                o, lse = attend_with_lse(qp, k, v, p.mask)
                o, lse = o.float(), lse.float()
                if p.any_no_own:
                    lse = lse.masked_fill(p.no_own, float("-inf"))
            else:
                o = torch.zeros(qp.shape, dtype=torch.float32)
                lse = torch.full(qp.shape[:3], float("-inf"))
            outs.append(o)
            lses.append(lse)
        if len(outs) == 1:
            return outs[0], lses[0]
        return torch.cat(outs), torch.cat(lses)

    def _attend_padding(self, i: int, qc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The real queries, flattened into one sequence, against the shared padding rows."""
        G, Tq, bi, ji = self.G, self.Tq, self.bi, self.ji
        H, hd = qc.shape[1], qc.shape[3]
        if self.all_valid:  # every row real: a reshape, no scatter
            flat = qc.permute(1, 0, 2, 3).reshape(1, H, G * Tq, hd)
            of, lf = attend_with_lse(flat, self.pad_k[i][None], self.pad_v[i][None], self.pad_mask)
            return of[0].view(H, G, Tq, hd).transpose(0, 1).float(), lf[0].view(H, G, Tq).transpose(0, 1).float()
        flat = qc.permute(1, 0, 2, 3)[:, bi, ji].unsqueeze(0)  # (1, H, N, hd)
        of, lf = attend_with_lse(flat, self.pad_k[i][None], self.pad_v[i][None], self.pad_mask)
        o = torch.zeros(G, Tq, H, hd)
        o[bi, ji] = of[0].transpose(0, 1).float()
        lse = torch.full((G, Tq, H), float("-inf"))
        lse[bi, ji] = lf[0].transpose(0, 1).float()
        return o.transpose(1, 2), lse.transpose(1, 2)

    def _align(self, i: int, qh: torch.Tensor, lh: torch.Tensor, heads, align: torch.Tensor) -> None:
        """Add the alignment heads' attention weights, rebuilt from the merged log-sum-exp ``lh``
        (G, h, Tq, 1), to ``align`` (G, Tq, frames)."""
        G, Tq, Fp, bi, ji = self.G, self.Tq, self.Fp, self.bi, self.ji
        for p in self.parts:
            j0 = p.align_j0
            if not p.fo or j0 >= Tq:
                continue
            k, _ = p.kv(i)
            # float32 products, a few rows at a time: a bfloat16 product of a new shape (every part
            # of every step has one) costs ~1 ms to set up in oneDNN, and the float32 keys of a few
            # rows stay in cache
            step = max(1, ALIGN_BLOCK_BYTES // (4 * qh.shape[1] * k.shape[2] * k.shape[3]))
            for a in range(0, p.b - p.a, step):
                b = min(p.b - p.a, a + step)
                kh = k[a:b, heads].float()
                s = torch.matmul(qh[p.a + a : p.a + b, :, j0:].float(), kh.transpose(-1, -2))
                w = exp_floored(s.add_(p.mask[a:b]).sub_(lh[p.a + a : p.a + b, :, j0:]))
                w = torch.nan_to_num(w, nan=0.0) if self.any_empty else w
                align[p.a + a : p.a + b, j0:, : p.fo] += w.sum(1)
        if self.use_pad:
            nh, sel = qh.shape[1], self.align_sel
            if self.all_valid and sel is None:
                flat, lf = qh.permute(1, 0, 2, 3).reshape(nh, G * Tq, -1), lh.permute(1, 0, 2, 3).reshape(nh, G * Tq, 1)
                mask = self.pad_mask[0]
            else:
                b, j = (bi, ji) if sel is None else (bi[sel], ji[sel])
                flat, lf = qh.permute(1, 0, 2, 3)[:, b, j], lh.permute(1, 0, 2, 3)[:, b, j]
                mask = self.pad_mask[0] if sel is None else self.pad_mask[0][:, sel]
            s = torch.matmul(flat.float(), self.pad_k_f32[i][heads].transpose(-1, -2)).add_(mask)  # (h, N, Fp)
            w = exp_floored(s.sub_(lf))
            w = (torch.nan_to_num(w, nan=0.0) if self.any_empty else w).sum(0)
            if self.all_valid and sel is None:
                align[..., :Fp] += w.view(G, Tq, Fp)
            else:
                align[b, j, :Fp] += w


def _index(heads: list[int] | None) -> slice | list[int] | None:
    """Head indices as a slice when contiguous (a view, not a copy of the keys), else the list."""
    if not heads:
        return None
    if heads == list(range(heads[0], heads[-1] + 1)):
        return slice(heads[0], heads[-1] + 1)
    return heads


def additive_mask(ok: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean "may attend" mask as the additive mask attention kernels take (0 / -inf)."""
    return torch.zeros(ok.shape, dtype=dtype).masked_fill_(~ok, float("-inf"))


_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def attend_with_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T + mask) v and the rows' log-sum-exp (B, H, Tq) (needed to merge two key sets),
    with torch's fused CPU attention kernel (no score matrix in memory) where it exists. A row with
    no allowed key gives garbage (callers mask it)."""
    if _FLASH is not None and q.dtype in (torch.float32, torch.bfloat16):
        out, lse = _FLASH(q, k, v, 0.0, False, attn_mask=mask, scale=1.0)
        return out, lse
    s = q @ k.transpose(-1, -2) + mask
    m = s.amax(-1, keepdim=True)
    lse = exp_floored(s - m).sum(-1).log_() + m[..., 0]
    return exp_floored(s - lse.unsqueeze(-1)) @ v, lse

