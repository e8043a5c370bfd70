"""Greedy decoding of many streams at once (continuous batching over the token loop).

Each stream forces its own prefix (one forward per stream: lengths differ), then all streams still
decoding advance together, one token each per iteration: embeddings, projections, feed-forward
layers and the vocabulary projection run as (B, d_model) matrix products; attention runs per
stream against that stream's own caches (positions and windows differ). A stream leaves the batch
at end-of-text, its token cap or a repetition loop; the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from streamrt.decoding.kv_cache import DecoderCache
from streamrt.decoding.repetition import RepetitionGuard

if TYPE_CHECKING:
    from streamrt.decoding.whisper_decoder import DecodeResult, IncrementalWhisperDecoder


@dataclass
class DecodeRequest:
    """One stream's decode: force ``prefix`` into ``cache``, then up to ``max_new_tokens``."""

    cache: DecoderCache
    prefix: Sequence[int]
    max_new_tokens: int
    reuse_prefix_kv: bool = True
    guard: RepetitionGuard | None = None


class _Run:
    def __init__(self, req: DecodeRequest, prefix: list[int], max_new: int):
        self.req = req
        self.prefix = prefix
        self.max_new = max_new
        self.tokens: list[int] = []
        self.logprobs: list[float] = []
        self.rows: list[torch.Tensor] = []
        self.stopped: str | None = None
        self.logits: torch.Tensor | None = None
        self.row: torch.Tensor | None = None
        self.align_rows: torch.Tensor | None = None
        self.alive = True

    def choose(self, logits: torch.Tensor, mask: torch.Tensor, eot: int) -> bool:
        """Take the next token from ``logits``; False when this stream is finished."""
        if len(self.tokens) >= self.max_new:
            self.stopped = "max_tokens"
            return False
        lp = torch.log_softmax(logits + mask, dim=-1)
        tok = int(torch.argmax(lp))
        if tok == eot:
            self.stopped = "eot"
            return False
        self.tokens.append(tok)
        self.logprobs.append(float(lp[tok]))
        self.rows.append(self.row)
        guard = self.req.guard
        if guard is not None:
            cut = guard.check(self.tokens)
            if cut is not None:
                del self.tokens[cut:], self.logprobs[cut:], self.rows[cut:]
                self.stopped = "repetition"
                return False
        if len(self.tokens) >= self.max_new:
            self.stopped = "max_tokens"
            return False
        return True


@torch.inference_mode()
def greedy_batch(dec: "IncrementalWhisperDecoder", requests: Sequence[DecodeRequest]) -> list["DecodeResult"]:
    from streamrt.decoding.whisper_decoder import DecodeResult

    runs: list[_Run] = []
    hidden: list[torch.Tensor] = []
    drafts: list[list[int]] = []
    for req in requests:
        prefix = [int(t) for t in req.prefix]
        if not prefix:
            raise ValueError("the forced prefix must hold at least the start-of-transcript token")
        cache = req.cache
        max_new = max(0, min(req.max_new_tokens, cache.max_tokens - len(prefix)))
        draft = _draft(cache, prefix, max_new)
        keep = cache.reusable_prefix(prefix, across_encoder_changes=req.reuse_prefix_kv)
        keep = min(keep, len(prefix) - 1)  # the last prefix token must run to give logits
        cache.keep_tokens(keep)
        # the forced prefix and the draft in one parallel forward: rows from the last prefix token on
        # give the logits that verify the draft (greedy's own choice at every position, as if decoded
        # one token at a time)
        x, align = dec.forward_hidden(cache, prefix[keep:] + draft, keep)
        first = len(prefix) - 1 - keep
        run = _Run(req, prefix, max_new)
        run.align_rows = align[first:]
        runs.append(run)
        hidden.append(x[first:])
        drafts.append(draft)
    # one vocabulary projection for every stream's verification rows
    logits_all = dec.logits(dec.final_norm(torch.cat(hidden))) if runs else None
    offset = 0
    for run, draft, h in zip(runs, drafts, hidden):
        logits = logits_all[offset : offset + h.shape[0]]
        offset += h.shape[0]
        _verify(run, draft, logits, dec)
    active = [r for r in runs if r.alive]
    while active:
        caches = [r.req.cache for r in active]
        ids = [r.tokens[-1] for r in active]
        positions = [len(r.prefix) + len(r.tokens) - 1 for r in active]
        logits, rows = forward_tokens(dec, caches, ids, positions)
        still = []
        for b, r in enumerate(active):
            r.row = rows[b]
            if r.choose(logits[b], dec.logit_mask, dec.eot):
                still.append(r)
        active = still
    out = []
    for r in runs:
        r.req.cache.last_sequence = r.prefix + r.tokens + ([dec.eot] if r.stopped == "eot" else [])
        r.req.cache.last_prefix_len = len(r.prefix)
        nf = r.req.cache.n_frames
        att = torch.stack(r.rows).numpy() if r.rows else np.zeros((0, nf), dtype=np.float32)
        out.append(DecodeResult(r.tokens, r.logprobs, att, r.stopped == "eot", r.stopped))
    return out


def _draft(cache: DecoderCache, prefix: list[int], max_new: int) -> list[int]:
    """A guess of this decode's output, from the previous decode: its continuation of ``prefix``
    when the previous sequence starts with ``prefix`` (the same window, or words of it committed
    since); otherwise (the window was trimmed and the committed words moved into the prompt) the
    previous generated tokens after the longest head of them found in ``prefix``."""
    last = cache.last_sequence
    n = len(prefix)
    room = min(max_new + 1, cache.max_tokens - n)  # at most max_new tokens and an eot, in the positions
    if len(last) > n and last[:n] == prefix:
        return last[n : n + room]
    generated = last[cache.last_prefix_len :]
    for k in range(len(generated) - 1, 0, -1):
        head = generated[:k]
        if any(prefix[j : j + k] == head for j in range(n - k, -1, -1)):
            return generated[k : k + room]
    return generated[:room]


def _verify(run: _Run, draft: list[int], logits: torch.Tensor, dec: "IncrementalWhisperDecoder") -> None:
    """Greedy choices along the draft's rows; stops at the first disagreement. Row j was computed with
    draft[:j] as input, so it is valid only while every earlier choice equalled the draft."""
    cache = run.req.cache
    p = len(run.prefix)
    for j in range(logits.shape[0]):
        run.row = run.align_rows[j]
        run.alive = run.choose(logits[j], dec.logit_mask, dec.eot)
        agreed = j < len(draft) and run.alive and run.tokens[-1] == draft[j]
        if not agreed:
            # rows up to position p - 1 + j are valid; the last chosen token is fed by the loop
            cache.keep_tokens(p + j)
            return


@torch.inference_mode()
def forward_tokens(
    dec: "IncrementalWhisperDecoder", caches: Sequence[DecoderCache], ids: Sequence[int], positions: Sequence[int]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One token per stream at its own position: (logits (B, vocab), alignment row per stream)."""
    B = len(caches)
    H, hd, d = dec.n_heads, dec.head_dim, dec.d_model
    for c, p in zip(caches, positions):
        if p + 1 > c.max_tokens:
            raise ValueError(f"position {p} exceeds the model's {c.max_tokens} decoder positions")
    pos = torch.as_tensor(list(positions), dtype=torch.long)
    x = dec.embed_tokens[torch.as_tensor(list(ids), dtype=torch.long)] + dec.embed_positions[pos]  # (B, d)
    align = [torch.zeros(c.n_frames, dtype=dec.dtype) for c in caches]
    for i, layer in enumerate(dec.layers):
        sa = layer.self_attn
        h = layer.self_attn_layer_norm(x)
        q = (sa.q_proj(h) * sa.scaling).view(B, H, 1, hd)
        k = sa.k_proj(h).view(B, H, hd)
        v = sa.v_proj(h).view(B, H, hd)
        outs = []
        for b, (c, p) in enumerate(zip(caches, positions)):
            c.self_k[i, :, p] = k[b]
            c.self_v[i, :, p] = v[b]
            w = torch.softmax(q[b] @ c.self_k[i, :, : p + 1].transpose(1, 2), dim=-1)
            outs.append(w @ c.self_v[i, :, : p + 1])
        x = x + sa.out_proj(torch.stack(outs).reshape(B, d))
        ca = layer.encoder_attn
        h = layer.encoder_attn_layer_norm(x)
        q = (ca.q_proj(h) * ca.scaling).view(B, H, 1, hd)
        heads = dec._heads_by_layer.get(i)
        x = x + ca.out_proj(_cross_attention(dec, i, q, caches, heads, align).reshape(B, d))
        h = layer.final_layer_norm(x)
        x = x + layer.fc2(layer.activation_fn(layer.fc1(h)))
    logits = dec.logits(dec.final_norm(x))
    n_heads = len(dec.alignment_heads)
    for b, c in enumerate(caches):
        if n_heads:
            align[b] /= n_heads
        del c.token_ids[positions[b] :]
        c.token_ids.append(int(ids[b]))
        c.token_cross_version = c.cross_version
    return logits, align


def _cross_attention(dec, i: int, q: torch.Tensor, caches: Sequence[DecoderCache], heads, align) -> torch.Tensor:
    """Layer ``i``'s cross-attention of one query per stream: (B, H, 1, hd). Adds the alignment heads'
    weights to ``align[b]``.

    Streams padded to 30 s (``dec.pad_k``) share rows [n_valid, max_frames) of their caches: they
    hold the same padding keys/values. Their scores against the padding are one batched product
    with the shared rows; only each window's own rows are read per stream. Same softmax, same
    result (to float rounding) as attending the stream's whole cache.
    """
    B, H, _, hd = q.shape
    out = torch.zeros(B, H, 1, hd, dtype=q.dtype)
    shared = [b for b, c in enumerate(caches) if dec.pad_k is not None and c.n_frames == c.max_frames == dec.max_frames]
    shared_set = set(shared)
    alone = [b for b, c in enumerate(caches) if c.n_frames and b not in shared_set]
    for b in alone:
        c = caches[b]
        nf = c.n_frames
        w = torch.softmax(q[b] @ c.cross_k[i, :, :nf].transpose(1, 2), dim=-1)  # (H, 1, nf)
        out[b] = w @ c.cross_v[i, :, :nf]
        if heads:
            align[b] += w[heads, 0].sum(0)
    if not shared:
        return out
    qs = q[shared, :, 0]  # (S, H, hd)
    pad_k, pad_v = dec.pad_k[i], dec.pad_v[i]  # (H, F, hd)
    scores = torch.einsum("shd,hfd->shf", qs, pad_k)  # (S, H, F)
    for j, b in enumerate(shared):
        c = caches[b]
        nv = c.n_valid
        if nv:
            scores[j, :, :nv] = (qs[j].unsqueeze(1) @ c.cross_k[i, :, :nv].transpose(1, 2)).squeeze(1)
    w = torch.softmax(scores, dim=-1)
    nvs = torch.tensor([caches[b].n_valid for b in shared])
    pad_w = w * (torch.arange(w.shape[-1])[None, :] >= nvs[:, None]).unsqueeze(1)
    o = torch.einsum("shf,hfd->shd", pad_w, pad_v)  # (S, H, hd)
    for j, b in enumerate(shared):
        c = caches[b]
        nv = c.n_valid
        if nv:
            o[j] += (w[j, :, :nv].unsqueeze(1) @ c.cross_v[i, :, :nv]).squeeze(1)
        out[b, :, 0] = o[j]
        if heads:
            align[b] += w[j, heads].sum(0)
    return out
