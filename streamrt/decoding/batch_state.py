"""One decode's batch: every stream's decoder caches gathered into batch tensors, and the batched
decoder forward over them.

Per-stream ``DecoderCache`` objects hold the state between steps. For one ``greedy_batch`` call the
batch's rows are gathered once into ``BatchDecodeState``:

- self-attention K/V ``(layers, B, heads, T, head_dim)``: the reused prefix rows are copied in, new
  rows are written by position, and the valid rows go back to each stream's cache at the end;
- cross-attention K/V of each window's own frames, in window buckets (``cross_attention``): the
  batch rows of a bucket are padded to that bucket's longest window. Streams padded to 30 s
  (``dec.pad_k``) keep sharing the padding rows: their scores against the padding are one broadcast
  product with ``dec.pad_k`` for the whole batch, and a mask keeps, per stream, its own frames below
  ``n_valid`` and the padding from there on.

So a forward of ``Tq`` tokens per stream is one matrix product per projection and one batched
attention per layer and bucket, whatever the streams' positions and window lengths (masks do the
rest). The math is ``IncrementalWhisperDecoder.forward_hidden``'s, stream by stream, to float
rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from streamrt.decoding.cross_attention import (
    CrossContext, WindowBucket, additive_mask, attend_with_lse, own_frames, padded_window, window_buckets,
)
from streamrt.decoding.kv_cache import DecoderCache

if TYPE_CHECKING:
    from streamrt.decoding.whisper_decoder import IncrementalWhisperDecoder


class BatchDecodeState:
    """The gathered state of ``caches`` for one decode; ``rows[b]``: self-attention rows of stream b
    that are valid on entry (copied from its cache); ``need_tokens``: positions the decode may use."""

    def __init__(self, dec: "IncrementalWhisperDecoder", caches: Sequence[DecoderCache],
                 rows: Sequence[int], need_tokens: int, buckets: Sequence[slice] | None = None):
        """``buckets``: the window buckets, contiguous slices covering the batch rows in order
        (default: ``window_buckets`` of the rows' windows in the given order)."""
        self.dec = dec
        self.bf16_linears = dec.bf16_linears  # once per decode, not per forward
        self.caches = list(caches)
        B = len(self.caches)
        L, H, hd = dec.n_layers, dec.n_heads, dec.head_dim
        T = max(1, min(need_tokens, max(c.max_tokens for c in self.caches)))
        self.self_k = torch.zeros(L, B, H, T, hd, dtype=dec.dtype)
        self.self_v = torch.zeros(L, B, H, T, hd, dtype=dec.dtype)
        for b, (c, n) in enumerate(zip(self.caches, rows)):
            if n:
                self.self_k[:, b, :, :n] = c.self_k[:, :, :n]
                self.self_v[:, b, :, :n] = c.self_v[:, :, :n]
        padded = [padded_window(dec, c) for c in self.caches]
        own = [own_frames(dec, c) for c in self.caches]
        buckets = list(buckets) if buckets is not None else window_buckets(own)
        ends = [0] + [s.stop for s in buckets]
        if ends[-1] != B or any(s.start != a or s.stop <= a for s, a in zip(buckets, ends)):
            raise ValueError(f"window buckets {buckets} do not cover the {B} batch rows in order")
        self.buckets = [WindowBucket.gather(dec, self.caches[s], own[s], s.start) for s in buckets]
        own_len = torch.tensor(own, dtype=torch.long)  # each row's own frames
        self.use_pad = any(padded)
        if self.use_pad:
            Fp = dec.max_frames
            self.pad_ok = (torch.arange(Fp)[None, :] >= own_len[:, None]) & torch.tensor(padded)[:, None]
        else:
            self.pad_ok = torch.zeros(B, 0, dtype=torch.bool)

    def ensure_tokens(self, n: int) -> None:
        """Make room for self-attention rows [0, n) (grown by doubling, up to the model's limit)."""
        T = self.self_k.shape[3]
        if n <= T:
            return
        new_t = min(max(n, 2 * T), max(c.max_tokens for c in self.caches))
        grow = (*self.self_k.shape[:3], new_t - T, self.self_k.shape[4])
        self.self_k = torch.cat([self.self_k, torch.zeros(grow, dtype=self.self_k.dtype)], dim=3)
        self.self_v = torch.cat([self.self_v, torch.zeros(grow, dtype=self.self_v.dtype)], dim=3)

    @property
    def size(self) -> int:
        return len(self.caches)

    def select(self, keep: Sequence[int]) -> None:
        """Keep only batch rows ``keep`` (ascending): the batch shrinks as streams finish. Each
        window bucket copies its kept rows once, up to their longest window."""
        keep = [int(k) for k in keep]
        if any(b <= a for a, b in zip(keep, keep[1:])):
            raise ValueError(f"kept rows must be ascending, got {keep}")
        idx = torch.as_tensor(keep, dtype=torch.long)
        self.self_k, self.self_v = self.self_k[:, idx], self.self_v[:, idx]
        buckets, lo = [], 0
        for bk in self.buckets:
            rows = [k - bk.lo for k in keep if bk.lo <= k < bk.hi]
            if rows:
                bk.keep(rows, lo)
                buckets.append(bk)
                lo += len(rows)
        self.buckets = buckets
        self.pad_ok = self.pad_ok[idx]
        self.caches = [self.caches[i] for i in keep]

    def write_back(self, b: int, token_ids: Sequence[int]) -> None:
        """Store row b's first ``len(token_ids)`` self-attention rows in its cache (for the next
        decode's prefix reuse)."""
        c = self.caches[b]
        n = len(token_ids)
        c.self_k[:, :, :n] = self.self_k[:, b, :, :n]
        c.self_v[:, :, :n] = self.self_v[:, b, :, :n]
        c.token_ids[:] = [int(t) for t in token_ids]
        c.token_cross_version = c.cross_version

    @torch.inference_mode()
    def forward(
        self, ids: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor, rows: slice = slice(None),
        align_from: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens ``ids`` (G, Tq) at positions ``pos`` (G, Tq) for the batch rows ``rows`` (a slice:
        views, no copies); ``valid`` (G, Tq) marks real tokens (padding rows compute garbage and write
        nothing). Writes the self-attention rows of the valid tokens. Returns hidden states
        (G, Tq, d_model) before the final norm and the alignment heads' cross-attention
        (G, Tq, frames), each stream's row valid up to its ``n_frames``. ``align_from`` (G,): row b
        needs alignment weights from query ``align_from[b]`` on only (a forced prefix's rows before
        its draft need none); the rows before it may be left zero."""
        dec = self.dec
        G, Tq = ids.shape
        H, hd, d = dec.n_heads, dec.head_dim, dec.d_model
        pos = torch.where(valid, pos, torch.zeros_like(pos))
        if int(pos.max()) >= self.self_k.shape[3]:
            raise ValueError(f"position {int(pos.max())} exceeds the {self.self_k.shape[3]} decoder rows of this decode")
        x = dec.embed_tokens[ids] + dec.embed_positions[pos]  # (G, Tq, d)
        bi, ji = valid.nonzero(as_tuple=True)
        pi = pos[bi, ji]
        Tk = int(pi.max()) + 1 if len(pi) else 1
        self_mask = additive_mask((torch.arange(Tk)[None, None, :] <= pos[:, :, None]).unsqueeze(1), dec.dtype)
        cross = CrossContext(self, rows, bi, ji, G, Tq, align_from)
        align = torch.zeros(G, Tq, cross.frames, dtype=torch.float32)
        # bfloat16 activations into the cross-attention query and the MLP where every projection
        # is bf16 (no cast around each GEMM); a few rows stay float32, where the float32 weights
        # are cheaper (quant.bf16). Self-attention and the residual stream stay float32.
        act = torch.bfloat16 if G * Tq > 4 and self.bf16_linears else x.dtype
        for i, layer in enumerate(dec.layers):
            sa = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            q = (sa.q_proj(h) * sa.scaling).view(G, Tq, H, hd).transpose(1, 2)
            k = sa.k_proj(h).view(G, Tq, H, hd)
            v = sa.v_proj(h).view(G, Tq, H, hd)
            sk, sv = self.self_k[i][rows], self.self_v[i][rows]
            sk[bi, :, pi] = k[bi, ji]
            sv[bi, :, pi] = v[bi, ji]
            o, _ = attend_with_lse(q, sk[:, :, :Tk], sv[:, :, :Tk], self_mask)
            x = x + sa.out_proj(o.transpose(1, 2).reshape(G, Tq, d))
            x = cross_attention_and_mlp(layer, i, x, cross, align, act)
        if dec.alignment_heads:
            align /= len(dec.alignment_heads)
        return x, align


def cross_attention_and_mlp(layer, i: int, x: torch.Tensor, cross: CrossContext, align: torch.Tensor,
                            act: torch.dtype) -> torch.Tensor:
    """The rest of decoder layer ``i`` after self-attention, on hidden states ``x`` (G, Tq, d_model):
    cross-attention through ``cross`` (adding the alignment heads' weights into ``align``), then the
    MLP, each with its residual; ``act`` is the dtype of the activations into their projections."""
    G, Tq, d = x.shape
    ca = layer.encoder_attn
    H = ca.num_heads
    h = layer.encoder_attn_layer_norm(x).to(act)
    q = (ca.q_proj(h) * ca.scaling).view(G, Tq, H, d // H).transpose(1, 2)  # (G, H, Tq, hd)
    o = cross.attend(i, q, align)
    x = x + ca.out_proj(o.transpose(1, 2).reshape(G, Tq, d))
    h = layer.final_layer_norm(x).to(act)
    return x + layer.fc2(layer.activation_fn(layer.fc1(h)))
