"""The one activation-cache machinery every cached encoder mode runs on.

Per layer and per session a ``LayerCache`` holds preallocated key/value buffers
``(batch, heads, slots + 1, head_dim)`` written by position (slot = position % slots, as gpt-fast's
``KVCache`` writes by ``input_pos``), the position each slot holds (-1: empty), the layer's inputs that
are not yet ready as queries (``pending``, at most a block or a look-ahead), and per-layer extra state
(the Conformer's convolution tail). The last slot is a trash slot: padded (ragged-batch) frames are
written there and never attended.

Sessions are batched by stacking their caches along dim 0 (``stack_caches``) and split back in place
(``unstack_caches``); a batch of one runs on the session's own tensors without a copy. An encoder
keeps its last batch resident (``ResidentBatch``): the sessions' caches become views of it, so the
next step over the same sessions copies nothing in or out. A step's new
frames enter in sub-steps of at most ``substep`` frames so the slots needed by pending queries are never
overwritten (checked on every write; a violation is a bug and raises).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import torch
import torch.nn.functional as F

from streamrt.encoders.base import AttentionPattern


class AttentionBlock(Protocol):
    """What the cache machinery needs from one encoder layer (weights only; no state)."""

    n_heads: int
    head_dim: int

    def attn_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) layer input -> (residual, normalised input for q/k/v)."""

    def project_q(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D) queries, already scaled by 1/sqrt(head_dim)."""

    def project_kv(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def finish(
        self, attn: torch.Tensor, resid: torch.Tensor, extras: list[Any], counts: list[int]
    ) -> tuple[torch.Tensor, list[Any]]:
        """Attention output (B, R, D, before out-projection) -> layer output; updates per-session extras
        (``counts[b]`` rows of session b are real)."""

    def new_extra(self) -> Any: ...


@dataclass(eq=False)
class LayerCache:
    k: torch.Tensor  # (B, H, slots + 1, head_dim)
    v: torch.Tensor
    slot_pos: torch.Tensor  # (B, slots + 1) int64, -1 = empty; slot `slots` is the trash slot
    pending: list[torch.Tensor]  # per session (p_b, D)
    n_in: list[int]
    n_out: list[int]
    extra: list[Any] = field(default_factory=list)

    @property
    def slots(self) -> int:
        return int(self.slot_pos.shape[1]) - 1


def new_layer_cache(
    block: AttentionBlock, slots: int, d_model: int, *, scratch: int = 0, dtype: torch.dtype = torch.float32
) -> LayerCache:
    """One session's cache for one layer; ``scratch`` more key/value rows after the trash slot (room
    a mode may use per step, never attended through ``slot_pos``), in ``dtype``."""
    shape = (1, block.n_heads, slots + 1 + scratch, block.head_dim)
    return LayerCache(
        k=torch.zeros(shape, dtype=dtype),
        v=torch.zeros(shape, dtype=dtype),
        slot_pos=torch.full((1, slots + 1), -1, dtype=torch.long),
        pending=[torch.zeros(0, d_model)],
        n_in=[0],
        n_out=[0],
        extra=[block.new_extra()],
    )


def reset_layer_cache(cache: LayerCache, block: AttentionBlock, d_model: int) -> None:
    cache.slot_pos.fill_(-1)
    cache.pending = [torch.zeros(0, d_model) for _ in cache.pending]
    cache.n_in = [0] * len(cache.n_in)
    cache.n_out = [0] * len(cache.n_out)
    cache.extra = [block.new_extra() for _ in cache.extra]


def stack_caches(caches: Sequence[LayerCache]) -> LayerCache:
    """One batch cache from single-session caches (copies; a single cache is used as is)."""
    if len(caches) == 1:
        return caches[0]
    return LayerCache(
        k=torch.cat([c.k for c in caches]),
        v=torch.cat([c.v for c in caches]),
        slot_pos=torch.cat([c.slot_pos for c in caches]),
        pending=[p for c in caches for p in c.pending],
        n_in=[n for c in caches for n in c.n_in],
        n_out=[n for c in caches for n in c.n_out],
        extra=[e for c in caches for e in c.extra],
    )


def unstack_caches(batch: LayerCache, caches: Sequence[LayerCache]) -> None:
    """Write a batch cache back into the single-session caches it was stacked from (in place)."""
    if len(caches) == 1 and batch is caches[0]:
        return
    for b, c in enumerate(caches):
        c.k.copy_(batch.k[b : b + 1])
        c.v.copy_(batch.v[b : b + 1])
        c.slot_pos.copy_(batch.slot_pos[b : b + 1])
        c.pending, c.n_in, c.n_out = [batch.pending[b]], [batch.n_in[b]], [batch.n_out[b]]
        c.extra = [batch.extra[b]]


class ResidentBatch:
    """The last batch's stacked caches, kept as the home of its sessions' caches.

    After a step every session of the batch holds views of the batch tensors (no copy out); the
    next step over the same sessions in the same order runs on the batch as it is (no copy in). A
    step over a different set stacks anew (one copy) and first copies the rows of the sessions
    that leave out of the old batch, so no batch tensor outlives its membership: memory stays one
    batch plus the per-session caches. ``sessions`` are per-session lists of layer caches (stable
    objects: a state's ``layers``). Not thread-safe: one step at a time per encoder."""

    def __init__(self) -> None:
        self._members: list[list[LayerCache]] = []
        self._layers: list[LayerCache] = []

    def stack(self, sessions: Sequence[list[LayerCache]]) -> list[LayerCache]:
        if len(sessions) == len(self._members) and all(a is b for a, b in zip(sessions, self._members)):
            for i, batch in enumerate(self._layers):
                _gather_lists(batch, [s[i] for s in sessions])  # a trim may have reset a session's lists
            return self._layers
        if len(sessions) == 1:
            return sessions[0]  # its own tensors, or its views of the resident batch: no copy
        leaving = {id(s) for s in self._members} - {id(s) for s in sessions}
        for s in self._members:
            if id(s) in leaving:
                for c in s:
                    c.k, c.v, c.slot_pos = c.k.clone(), c.v.clone(), c.slot_pos.clone()
        self._layers = [stack_caches([s[i] for s in sessions]) for i in range(len(sessions[0]))]
        self._members = list(sessions)
        return self._layers

    def stack_rows(self, sessions: Sequence[list[LayerCache]]) -> tuple[list[LayerCache], list[int]]:
        """``stack``, and each session's batch row. Several sessions that are all members of the
        resident batch (a step's trims, or a step over part of the batch) run on it as it is, at
        their rows: restacking them would copy every other member's caches out and, at the next
        whole-batch step, all of them back in (at 32 streams ~170 MB per step with a trim). Use
        with ``unstack_rows``."""
        where = {id(s): b for b, s in enumerate(self._members)}
        if 1 < len(sessions) < len(self._members) and all(id(s) in where for s in sessions):
            for i, batch in enumerate(self._layers):
                _gather_lists(batch, [s[i] for s in self._members])
            return self._layers, [where[id(s)] for s in sessions]
        return self.stack(sessions), list(range(len(sessions)))

    def unstack_rows(self, layers: Sequence[LayerCache], sessions: Sequence[list[LayerCache]], rows: list[int]) -> None:
        """``unstack`` after ``stack_rows``: sessions run at their rows of the resident batch
        already view its tensors; only their per-session lists are handed back."""
        if layers is not self._layers or len(sessions) == len(self._members):  # stacked as a whole
            self.unstack(layers, sessions)
            return
        for i, batch in enumerate(layers):
            for b, s in zip(rows, sessions):
                c = s[i]
                c.pending, c.n_in, c.n_out = [batch.pending[b]], [batch.n_in[b]], [batch.n_out[b]]
                c.extra = [batch.extra[b]]

    def unstack(self, layers: Sequence[LayerCache], sessions: Sequence[list[LayerCache]]) -> None:
        if len(sessions) == 1 and layers is sessions[0]:
            return
        for i, batch in enumerate(layers):
            for b, s in enumerate(sessions):
                c = s[i]
                c.k, c.v, c.slot_pos = batch.k[b : b + 1], batch.v[b : b + 1], batch.slot_pos[b : b + 1]
                c.pending, c.n_in, c.n_out = [batch.pending[b]], [batch.n_in[b]], [batch.n_out[b]]
                c.extra = [batch.extra[b]]


def _gather_lists(batch: LayerCache, caches: Sequence[LayerCache]) -> None:
    batch.pending = [c.pending[0] for c in caches]
    batch.n_in = [c.n_in[0] for c in caches]
    batch.n_out = [c.n_out[0] for c in caches]
    batch.extra = [c.extra[0] for c in caches]


def _first_key(pattern: AttentionPattern, q: int) -> int:
    """Smallest key position query ``q`` may attend (keys below it can be evicted)."""
    left = getattr(pattern, "left_frames", None)
    if left is None:
        return 0
    chunk = getattr(pattern, "chunk_frames", None)
    base = (q // chunk) * chunk if chunk else q
    return base - left


def _pad(rows: Sequence[torch.Tensor], length: int, d: int) -> torch.Tensor:
    out = torch.zeros(len(rows), length, d)
    for b, r in enumerate(rows):
        out[b, : r.shape[0]] = r
    return out


def layer_step(
    block: AttentionBlock,
    cache: LayerCache,
    pattern: AttentionPattern,
    news: Sequence[torch.Tensor],
    final: Sequence[bool],
) -> list[torch.Tensor]:
    """Feed each session's new layer inputs ``news[b]`` (t_b, D); returns each session's ready outputs."""
    B, H, hd, slots = len(news), block.n_heads, block.head_dim, cache.slots
    d = news[0].shape[-1]
    xs = [torch.cat([cache.pending[b], news[b]]) for b in range(B)]
    lens = [x.shape[0] for x in xs]
    n_new = [n.shape[0] for n in news]
    if max(n_new) > slots:
        raise RuntimeError(f"sub-step of {max(n_new)} frames exceeds the {slots}-slot cache")
    L = max(lens)
    n_in_new = [cache.n_in[b] + n_new[b] for b in range(B)]
    ready_end = [pattern.ready(cache.n_out[b], n_in_new[b], final[b]) for b in range(B)]
    r = [ready_end[b] - cache.n_out[b] for b in range(B)]
    if L == 0:
        return [torch.zeros(0, d) for _ in range(B)]

    X = xs[0].unsqueeze(0) if B == 1 else _pad(xs, L, d)
    t = torch.arange(L)
    pos = torch.tensor(cache.n_out)[:, None] + t[None, :]
    p_len = torch.tensor([cache.pending[b].shape[0] for b in range(B)])[:, None]
    write = (t[None, :] >= p_len) & (t[None, :] < torch.tensor(lens)[:, None])
    resid, h = block.attn_inputs(X)

    if bool(write.any()):
        kv_idx = write.nonzero(as_tuple=True)
        hk, hv = block.project_kv(h[kv_idx])  # (N, D) for the new frames only
        slot = torch.where(write, pos % slots, torch.full_like(pos, slots))
        old = cache.slot_pos.gather(1, slot)
        floor = torch.tensor([_first_key(pattern, cache.n_out[b]) for b in range(B)])[:, None]
        if bool(((old >= floor) & (old >= 0) & write).any()):
            raise RuntimeError("activation cache would evict a key a pending query still needs")
        bi, si = kv_idx[0], slot[kv_idx]
        cache.k[bi, :, si] = hk.view(-1, H, hd)
        cache.v[bi, :, si] = hv.view(-1, H, hd)
        cache.slot_pos[bi, si] = pos[kv_idx]

    R = max(r)
    outs: list[torch.Tensor]
    if R > 0:
        q = block.project_q(h[:, :R]).view(B, R, H, hd).transpose(1, 2)
        kpos = cache.slot_pos[:, None, :]
        mask = pattern.allowed(pos[:, :R, None], kpos) & (kpos >= 0)
        qvalid = t[None, :R] < torch.tensor(r)[:, None]
        trash = torch.zeros(slots + 1, dtype=torch.bool)
        trash[slots] = True
        mask = torch.where(qvalid[:, :, None], mask, trash[None, None, :])
        attn = F.scaled_dot_product_attention(q, cache.k, cache.v, attn_mask=mask[:, None], scale=1.0)
        attn = attn.transpose(1, 2).reshape(B, R, H * hd)
        y, cache.extra = block.finish(attn, resid[:, :R], cache.extra, r)
        outs = [y[b, : r[b]] for b in range(B)]
    else:
        outs = [torch.zeros(0, d) for _ in range(B)]

    cache.pending = [xs[b][r[b] :] for b in range(B)]
    cache.n_in = n_in_new
    cache.n_out = ready_end
    return outs


def run_layers(
    blocks: Sequence[AttentionBlock],
    caches: Sequence[LayerCache],
    pattern: AttentionPattern,
    news: Sequence[torch.Tensor],
    final: Sequence[bool],
    substep: int,
) -> list[torch.Tensor]:
    """Run new frames through all layers in sub-steps of ``substep`` frames; returns per-session outputs."""
    B = len(news)
    n_sub = max(1, max(-(-n.shape[0] // substep) for n in news))
    collected: list[list[torch.Tensor]] = [[] for _ in range(B)]
    for i in range(n_sub):
        cur = [n[i * substep : (i + 1) * substep] for n in news]
        fin = [final[b] and i == n_sub - 1 for b in range(B)]
        for block, cache in zip(blocks, caches):
            cur = layer_step(block, cache, pattern, cur, fin)
        for b in range(B):
            collected[b].append(cur[b])
    return [torch.cat(c) for c in collected]
