"""One decode's batch: every stream's decoder caches gathered into batch tensors, and the batched
decoder forward over them.

Per-stream ``DecoderCache`` objects hold the state between steps. For one ``greedy_batch`` call the
batch's rows are gathered once into ``BatchDecodeState``:

- self-attention K/V ``(layers, B, heads, T, head_dim)``: the reused prefix rows are copied in, new
  rows are written by position, and the valid rows go back to each stream's cache at the end;
- cross-attention K/V of each window's own frames ``(layers, B, heads, F, head_dim)`` with
  ``F = max own rows``. Streams padded to 30 s (``dec.pad_k``) keep sharing the padding rows: their
  scores against the padding are one broadcast product with ``dec.pad_k`` for the whole batch, and
  a mask keeps, per stream, its own frames below ``n_valid`` and the padding from there on.

So a forward of ``Tq`` tokens per stream is one matrix product per projection and one batched
attention per layer, whatever the streams' positions and window lengths (masks do the rest).
The math is ``IncrementalWhisperDecoder.forward_hidden``'s, stream by stream, to float rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from streamrt.decoding.kv_cache import DecoderCache
from streamrt.decoding.numerics import exp_floored

if TYPE_CHECKING:
    from streamrt.decoding.whisper_decoder import IncrementalWhisperDecoder


class BatchDecodeState:
    """The gathered state of ``caches`` for one decode; ``rows[b]``: self-attention rows of stream b
    that are valid on entry (copied from its cache); ``need_tokens``: positions the decode may use."""

    def __init__(self, dec: "IncrementalWhisperDecoder", caches: Sequence[DecoderCache],
                 rows: Sequence[int], need_tokens: int):
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
        padded = [dec.pad_k is not None and c.n_frames == c.max_frames == dec.max_frames for c in self.caches]
        own = [c.n_valid if p else c.n_frames for c, p in zip(self.caches, padded)]
        Fo = max(own) if own else 0
        # every row is written (masked rows must hold finite values: 0 * inf would poison the kernel)
        self.own_k = torch.empty(L, B, H, Fo, hd, dtype=dec.cross_dtype)
        self.own_v = torch.empty(L, B, H, Fo, hd, dtype=dec.cross_dtype)
        for b, (c, n) in enumerate(zip(self.caches, own)):
            self.own_k[:, b, :, :n] = c.cross_k[:, :, :n]
            self.own_v[:, b, :, :n] = c.cross_v[:, :, :n]
            if n < Fo:
                self.own_k[:, b, :, n:] = 0
                self.own_v[:, b, :, n:] = 0
        self.own_len = torch.tensor(own, dtype=torch.long)  # each row's own frames
        self.own_ok = torch.arange(Fo)[None, :] < self.own_len[:, None]  # (B, Fo)
        # batch row b reads own_k/own_v row own_rows[b] (None: row b); see select
        self.own_rows: torch.Tensor | None = None
        self.use_pad = any(padded)
        if self.use_pad:
            Fp = dec.max_frames
            self.pad_ok = (torch.arange(Fp)[None, :] >= self.own_len[:, None]) & torch.tensor(padded)[:, None]
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
        """Keep only batch rows ``keep`` (in that order): the batch shrinks as streams finish."""
        idx = torch.as_tensor(list(keep), dtype=torch.long)
        self.self_k, self.self_v = self.self_k[:, idx], self.self_v[:, idx]
        # the big cross rows are not copied: the kept rows are read through an index (a copy of
        # the live rows per layer, which the attention reads anyway), up to the longest kept window
        self.own_rows = idx if self.own_rows is None else self.own_rows[idx]
        self.own_len = self.own_len[idx]
        fo = int(self.own_len.max()) if len(idx) else 0
        self.own_ok, self.pad_ok = self.own_ok[idx, :fo], self.pad_ok[idx]
        self.caches = [self.caches[i] for i in keep]

    def own(self, i: int, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``i``'s own-frame keys and values (G, heads, Fo, head_dim) of batch rows ``rows``."""
        fo = self.own_ok.shape[1]
        if self.own_rows is None:
            return self.own_k[i][rows, :, :fo], self.own_v[i][rows, :, :fo]
        idx = self.own_rows[rows]
        return self.own_k[i][:, :, :fo].index_select(0, idx), self.own_v[i][:, :, :fo].index_select(0, idx)

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
        self, ids: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor, rows: slice = slice(None)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens ``ids`` (G, Tq) at positions ``pos`` (G, Tq) for the batch rows ``rows`` (a slice:
        views, no copies); ``valid`` (G, Tq) marks real tokens (padding rows compute garbage and write
        nothing). Writes the self-attention rows of the valid tokens. Returns hidden states
        (G, Tq, d_model) before the final norm and the alignment heads' cross-attention
        (G, Tq, frames), each stream's row valid up to its ``n_frames``."""
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
        self_mask = _additive((torch.arange(Tk)[None, None, :] <= pos[:, :, None]).unsqueeze(1), dec.dtype)
        cross = _CrossContext(self, rows, bi, ji, G, Tq)
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
            o, _ = _attend(q, sk[:, :, :Tk], sv[:, :, :Tk], self_mask)
            x = x + sa.out_proj(o.transpose(1, 2).reshape(G, Tq, d))
            ca = layer.encoder_attn
            h = layer.encoder_attn_layer_norm(x).to(act)
            q = (ca.q_proj(h) * ca.scaling).view(G, Tq, H, hd).transpose(1, 2)  # (G, H, Tq, hd)
            o = cross.attend(i, q, align)
            x = x + ca.out_proj(o.transpose(1, 2).reshape(G, Tq, d))
            h = layer.final_layer_norm(x).to(act)
            x = x + layer.fc2(layer.activation_fn(layer.fc1(h)))
        if dec.alignment_heads:
            align /= len(dec.alignment_heads)
        return x, align


class _CrossContext:
    """Cross-attention of one forward over a batch slice: each stream's own frames (padded batch,
    masked to its own rows) and the shared 30 s padding (the real queries flattened into one
    sequence against ``dec.pad_k``: read once for the whole batch). The two softmaxes are merged by
    their log-sum-exp; the alignment heads' weights are rebuilt from the merged log-sum-exp."""

    def __init__(self, state: BatchDecodeState, rows: slice, bi: torch.Tensor, ji: torch.Tensor, G: int, Tq: int):
        self.state, self.rows, self.bi, self.ji, self.G, self.Tq = state, rows, bi, ji, G, Tq
        self.all_valid = len(bi) == G * Tq
        dec = state.dec
        self.dtype = dec.cross_dtype
        own_ok, pad_ok = state.own_ok[rows], state.pad_ok[rows]
        self.Fo, self.Fp = own_ok.shape[1], pad_ok.shape[1]
        self.frames = max(self.Fo, self.Fp, 1)
        self.own_mask = _additive(own_ok[:, None, None, :], self.dtype)  # (G, 1, 1, Fo)
        self.no_own = ~own_ok.any(1)[:, None, None]
        self.use_pad = state.use_pad and bool(len(bi))
        if self.use_pad:
            self.pad_k, self.pad_v = dec.padding_kv(self.dtype)
            self.pad_mask = _additive(pad_ok[bi][None, None], self.dtype)  # (1, 1, N, Fp), per real query
            self.no_pad = ~pad_ok.any(1)[:, None, None]
        self.any_no_own = bool(self.no_own.any())
        self.any_no_pad = self.use_pad and bool(self.no_pad.any())
        # a stream with neither own frames nor padding: its softmax is empty (NaN), zeroed
        self.any_empty = bool((self.no_own & self.no_pad).any()) if self.use_pad else self.any_no_own

    def attend(self, i: int, q: torch.Tensor, align: torch.Tensor) -> torch.Tensor:
        G, Tq, Fo, Fp = self.G, self.Tq, self.Fo, self.Fp
        H, hd = q.shape[1], q.shape[3]
        qc = q.to(self.dtype)
        if Tq == 1 and self.all_valid:  # the token loop (10 % faster than the fused kernels here)
            return self._attend_one_token(i, qc, align).to(q.dtype)
        o = lse = None  # (G, H, Tq, hd), (G, H, Tq)
        if Fo:
            ok, ov = self.state.own(i, self.rows)
            o, lse = _attend(qc, ok, ov, self.own_mask)
            o, lse = o.float(), lse.float()
            if self.any_no_own:
                lse = lse.masked_fill(self.no_own, float("-inf"))
        if self.use_pad:
            o2, l2 = self._attend_padding(i, qc, H, hd)
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
            self._align(i, qc[:, heads], lse[:, heads].unsqueeze(-1), heads, align, ok if Fo else None)
        return o.to(q.dtype)

    def _attend_one_token(self, i: int, qc: torch.Tensor, align: torch.Tensor) -> torch.Tensor:
        """One query per stream (the token loop): the scores are small, so one explicit softmax
        over [own frames, padding] gives the output and the alignment weights together."""
        G, Fo, Fp = self.G, self.Fo, self.Fp
        H, hd = qc.shape[1], qc.shape[3]
        parts = []
        if Fo:
            ok, ov = self.state.own(i, self.rows)
            parts.append((qc @ ok.transpose(-1, -2) + self.own_mask).float())  # (G, H, 1, Fo)
        if self.use_pad:
            sp = qc.view(G, H, hd).transpose(0, 1) @ self.pad_k[i].transpose(-1, -2)  # (H, G, Fp)
            parts.append((sp.transpose(0, 1).unsqueeze(2) + self.pad_mask.view(G, 1, 1, Fp)).float())
        if not parts:
            return torch.zeros_like(qc)
        w = torch.softmax(torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0], dim=-1)
        if self.any_empty:
            w = torch.nan_to_num(w, nan=0.0)
        wc = w.to(self.dtype)
        o = wc[..., :Fo] @ ov if Fo else 0.0
        if self.use_pad:
            o = o + (wc[..., Fo:].view(G, H, Fp).transpose(0, 1) @ self.pad_v[i]).transpose(0, 1).unsqueeze(2)
        heads = self.state.dec._heads_by_layer.get(i)
        if heads:
            wh = w[:, heads].sum(1)  # (G, 1, Fo + Fp)
            if Fo:
                align[..., :Fo] += wh[..., :Fo]
            if self.use_pad:
                align[..., :Fp] += wh[..., Fo:]
        return o.float()

    def _attend_padding(self, i: int, qc: torch.Tensor, H: int, hd: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The real queries, flattened into one sequence, against the shared padding rows."""
        G, Tq, bi, ji = self.G, self.Tq, self.bi, self.ji
        if self.all_valid:  # every row real (the token loop): a reshape, no scatter
            flat = qc.permute(1, 0, 2, 3).reshape(1, H, G * Tq, hd)
            of, lf = _attend(flat, self.pad_k[i][None], self.pad_v[i][None], self.pad_mask)
            return of[0].view(H, G, Tq, hd).transpose(0, 1).float(), lf[0].view(H, G, Tq).transpose(0, 1).float()
        flat = qc.permute(1, 0, 2, 3)[:, bi, ji].unsqueeze(0)  # (1, H, N, hd)
        of, lf = _attend(flat, self.pad_k[i][None], self.pad_v[i][None], self.pad_mask)
        o = torch.zeros(G, Tq, H, hd)
        o[bi, ji] = of[0].transpose(0, 1).float()
        lse = torch.full((G, Tq, H), float("-inf"))
        lse[bi, ji] = lf[0].transpose(0, 1).float()
        return o.transpose(1, 2), lse.transpose(1, 2)

    def _align(self, i: int, qh: torch.Tensor, lh: torch.Tensor, heads, align: torch.Tensor, own_k) -> None:
        """Add the alignment heads' attention weights, rebuilt from the merged log-sum-exp ``lh``
        (G, h, Tq, 1), to ``align`` (G, Tq, frames)."""
        G, Tq, Fo, Fp, bi, ji = self.G, self.Tq, self.Fo, self.Fp, self.bi, self.ji
        if Fo:
            s = (qh @ own_k[:, heads].transpose(-1, -2) + self.own_mask).float()
            w = exp_floored(s - lh)
            align[..., :Fo] += (torch.nan_to_num(w, nan=0.0) if self.any_empty else w).sum(1)
        if self.use_pad:
            nh = qh.shape[1]
            if self.all_valid:
                flat, lf = qh.permute(1, 0, 2, 3).reshape(nh, G * Tq, -1), lh.permute(1, 0, 2, 3).reshape(nh, G * Tq, 1)
            else:
                flat, lf = qh.permute(1, 0, 2, 3)[:, bi, ji], lh.permute(1, 0, 2, 3)[:, bi, ji]
            s = (flat @ self.pad_k[i][heads].transpose(-1, -2) + self.pad_mask[0]).float()  # (h, N, Fp)
            w = exp_floored(s - lf)
            w = (torch.nan_to_num(w, nan=0.0) if self.any_empty else w).sum(0)
            if self.all_valid:
                align[..., :Fp] += w.view(G, Tq, Fp)
            else:
                align[bi, ji, :Fp] += w


def _index(heads: list[int] | None) -> slice | list[int] | None:
    """Head indices as a slice when contiguous (a view, not a copy of the keys), else the list."""
    if not heads:
        return None
    if heads == list(range(heads[0], heads[-1] + 1)):
        return slice(heads[0], heads[-1] + 1)
    return heads


def _additive(ok: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean "may attend" mask as the additive mask attention kernels take (0 / -inf)."""
    return torch.zeros(ok.shape, dtype=dtype).masked_fill_(~ok, float("-inf"))


_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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


@torch.inference_mode()
def forward_tokens(
    dec: "IncrementalWhisperDecoder", caches: Sequence[DecoderCache], ids: Sequence[int], positions: Sequence[int]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One token per stream at its own position, on the streams' own caches (rows [0, position)
    must be valid): (logits (B, vocab), alignment row per stream). Writes each cache's new row."""
    for c, p in zip(caches, positions):
        if p + 1 > c.max_tokens:
            raise ValueError(f"position {p} exceeds the model's {c.max_tokens} decoder positions")
    state = BatchDecodeState(dec, caches, positions, max(positions) + 1)
    idx = torch.as_tensor(list(ids), dtype=torch.long)[:, None]
    pos = torch.as_tensor(list(positions), dtype=torch.long)[:, None]
    x, align = state.forward(idx, pos, torch.ones_like(idx, dtype=torch.bool))
    logits = dec.logits(dec.final_norm(x[:, 0]))
    rows = []
    for b, (c, p) in enumerate(zip(caches, positions)):
        state.write_back(b, c.token_ids[:p] + [int(ids[b])])
        rows.append(align[b, 0, : c.n_frames])
    return logits, rows
