"""Block encoding with look-ahead (Emformer's "right context", no fine-tuning): mode "block-lookahead".

Whisper's encoder was trained with every frame seeing 30 s in both directions. The block-causal mode
gives a block no future at all, and untrained that costs quality (docs/encoders.md). Here a frame is
*frozen* (its keys and values go into the per-layer cache, its output is final) only once
``lookahead_frames`` more frames exist. Each step runs one *group*: the frames after the frozen point,
up to the window's end, through all layers, attending each other freely and the frozen frames before
them (``left_frames`` back); the group's frames but the last ``lookahead_frames`` are frozen, and those
last ones are returned as *provisional* (re-encoded next step). The decoder sees them at once, so the
look-ahead costs compute, not latency.

Per step and stream: (new frames + ``lookahead``) frames through the layers (3x block-causal at
0.5 s steps and 1 s look-ahead); attention over at most ``left + chunk + lookahead`` keys, where a
group freezes at most ``chunk_frames`` (a longer step runs several groups): constant in the stream's
length. ``EncoderOutput.start`` is the frozen point before the step: the window from there is replaced.

Exactness: the window depends on the window sizes at which the steps ran (a frame's right context is
what existed when it was frozen), and on nothing else: ``streamrt.encoders.reference.lookahead_pass``
replays those step ends in one plain pass, and the tests hold the streamed, batched, cached window to
it. Offline end-of-stream WER on the test set (``python -m streamrt.bench.encoder_quality``, 0.5 s
groups): 3.3 % with 0.5 s of look-ahead, 2.1 % with 1 s; block-causal 12.4 %, full attention 1.2 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from streamrt.encoders.base import EncoderOutput
from streamrt.encoders.cache import LayerCache, new_layer_cache
from streamrt.encoders.whisper import CachedWhisperEncoder, WhisperEncoderState
from streamrt.encoders.whisper_front import WhisperBlock


@dataclass(frozen=True)
class BlockLookahead:
    """Frames frozen once ``lookahead_frames`` more exist, at most ``chunk_frames`` per group;
    ``left_frames`` of frozen frames before a group are attended (None: the whole window)."""

    chunk_frames: int
    left_frames: int | None = 500
    lookahead_frames: int = 50

    def cache_frames(self, substep: int) -> int:
        """Frozen keys a layer must hold: the left context plus the frames a group freezes."""
        left = self.left_frames if self.left_frames is not None else 10**9
        return left + self.chunk_frames


@dataclass(eq=False)
class LookaheadState(WhisperEncoderState):
    frozen: int = 0  # window frames [0, frozen) are final; [frozen, n_conv) are provisional


@dataclass(frozen=True)
class _Group:
    start: int  # first window frame of the group
    end: int  # one past its last frame
    freeze: int  # how many of its first frames become final (0: a provisional-only group)


def plan_groups(frozen: int, n: int, max_freeze: int, lookahead: int, final: bool) -> list[_Group]:
    """The groups a stream at frozen point ``frozen`` with ``n`` window frames runs in one step.

    Everything but the last ``lookahead`` frames is frozen (all of it at end of stream), at most
    ``max_freeze`` frames per group; the last group ends at ``n``, so its look-ahead rows are the
    provisional frames. A steady stream runs one group of (its step's frames + ``lookahead``)."""
    groups = []
    f = frozen
    while n - f > max_freeze + lookahead:
        groups.append(_Group(f, f + max_freeze + lookahead, max_freeze))
        f += max_freeze
    if f < n and not final:
        groups.append(_Group(f, n, max(0, n - f - lookahead)))
    while f < n and final:  # end of stream: the look-ahead is what exists; freeze it all
        groups.append(_Group(f, min(f + max_freeze + lookahead, n), min(max_freeze, n - f)))
        f += groups[-1].freeze
    return groups


class LookaheadWhisperEncoder(CachedWhisperEncoder):
    """Whisper's encoder in blocks frozen after a look-ahead; provisional frames re-encoded each step."""

    pattern: BlockLookahead
    #: dtype of the key/value caches and of attention (bfloat16 halves the cache and, where the CPU
    #: has bf16 matrix units, speeds attention up; set before create_state)
    cache_dtype: torch.dtype = torch.float32

    def __init__(self, encoder: nn.Module, pattern: BlockLookahead, *, auto_trim_keep_frames: int | None = None):
        super().__init__(encoder, pattern, substep_frames=pattern.chunk_frames,
                         auto_trim_keep_frames=auto_trim_keep_frames)

    state_type = LookaheadState

    def _new_layer_cache(self, block: WhisperBlock) -> LayerCache:
        # room for one group after the cache slots (and the trash slot): the group's own keys are
        # written there, so attention reads one tensor and nothing is concatenated
        group = self.pattern.chunk_frames + self.pattern.lookahead_frames
        return new_layer_cache(block, self.slots, self.d_model, scratch=group, dtype=self.cache_dtype)

    def window_frames(self, state: LookaheadState) -> int:
        return state.n_conv  # every frame is out, the last ones provisionally

    def _output_start(self, state: LookaheadState) -> int:
        return state.frozen

    @torch.inference_mode()
    def step_batch(self, mels, states, *, final=None) -> list[EncoderOutput]:
        outs = super().step_batch(mels, states, final=final)
        # a step that changed nothing replaces nothing: its (empty) output starts at the window's end
        return [o if o.frames.shape[0] or o.start == 0 else EncoderOutput(o.frames, self.window_frames(s))
                for o, s in zip(outs, states)]

    def _drop_front(self, state: LookaheadState, keep_last_frames: int) -> torch.Tensor:
        state.frozen = 0
        return super()._drop_front(state, keep_last_frames)

    def _reencode_kept(self, states: Sequence[LookaheadState], xs: list[torch.Tensor]) -> list[torch.Tensor]:
        # one group over all of a session's kept frames: each sees the others (more context than a
        # step gives, and one pass instead of (chunk + look-ahead) / chunk passes); all but the
        # look-ahead frozen. The sessions of a batched trim run as one batch of groups.
        return self._run(states, xs, [s.finished for s in states], max_freeze=self.max_window_frames)

    def _run(self, states: Sequence[LookaheadState], news, final, max_freeze: int | None = None) -> list[torch.Tensor]:
        p = self.pattern
        plans = []
        for state, new, fin in zip(states, news, final):
            changed = new.shape[0] > 0 or fin
            plans.append(plan_groups(state.frozen, state.n_conv, max_freeze or p.chunk_frames,
                                     p.lookahead_frames, fin) if changed else [])
        sessions = [s.layers for s in states]
        per_layer, batch_rows = self._resident.stack_rows(sessions)
        pieces: list[list[torch.Tensor]] = [[] for _ in states]
        for r in range(max((len(g) for g in plans), default=0)):
            rows = [b for b, g in enumerate(plans) if len(g) > r]
            groups = [plans[b][r] for b in rows]
            inputs = [self._layer0_input(states[b], g) for b, g in zip(rows, groups)]
            outs = self._group_forward(per_layer, [batch_rows[b] for b in rows], groups, inputs)
            for b, g, out in zip(rows, groups, outs):
                last = r == len(plans[b]) - 1
                pieces[b].append(out if last else out[: g.freeze])
                states[b].frozen = g.start + g.freeze
        self._resident.unstack_rows(per_layer, sessions, batch_rows)
        norm = self.encoder.layer_norm
        return [norm(torch.cat(pc)) if pc else torch.zeros(0, self.d_model) for pc in pieces]

    def _layer0_input(self, state: LookaheadState, g: _Group) -> torch.Tensor:
        return state.history[g.start : g.end] + self.encoder.embed_positions.weight[g.start : g.end]

    def _group_forward(
        self, layers: Sequence[LayerCache], rows: list[int], groups: list[_Group], inputs: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Run each group through all layers at its batch row ``rows[i]`` of ``layers`` (free
        attention inside the group, plus its frozen left context from the cache); write the frozen
        frames' keys/values into the cache."""
        B, G, d = len(rows), max(x.shape[0] for x in inputs), self.d_model
        X = inputs[0].unsqueeze(0) if B == 1 else torch.stack([F.pad(x, (0, 0, 0, G - x.shape[0])) for x in inputs])
        lens = torch.tensor([x.shape[0] for x in inputs])
        starts = torch.tensor([g.start for g in groups])
        left = self.pattern.left_frames
        lo = starts - left if left is not None else torch.zeros_like(starts)
        key_in_group = torch.arange(G)[None, :] < lens[:, None]  # (B, G)
        idx = torch.tensor(rows)
        everyone = rows == list(range(layers[0].k.shape[0]))
        slot_pos = layers[0].slot_pos if everyone else layers[0].slot_pos[idx]
        cached_ok = (slot_pos >= lo[:, None]) & (slot_pos < starts[:, None]) & (slot_pos >= 0)
        mask = torch.cat([cached_ok, key_in_group], dim=1)[:, None, None, :]  # (B, 1, 1, S + 1 + G)
        # the frozen frames, written into every layer's cache after its attention: batch row, slot and
        # position of each, and where its key is in this forward (group i, row j). Only the frames a
        # later group can attend are written (a trim's group freezes more than the slots hold).
        slots = layers[0].slots
        w_rows, w_slots, w_pos, src_i, src_j = [], [], [], [], []
        for i, (b, g) in enumerate(zip(rows, groups)):
            pos = torch.arange(max(g.start, g.start + g.freeze - slots), g.start + g.freeze)
            w_rows.append(torch.full_like(pos, b))
            w_slots.append(pos % slots)
            w_pos.append(pos)
            src_i.append(torch.full_like(pos, i))
            src_j.append(pos - g.start)
        writes = None
        if sum(len(p) for p in w_pos):
            writes = tuple(torch.cat(t) for t in (w_rows, w_slots, w_pos, src_i, src_j))
        for block, cache in zip(self.blocks, layers):
            X = self._layer(block, cache, X, mask, idx, everyone, writes)
        return [X[i, : x.shape[0]] for i, x in enumerate(inputs)]

    @staticmethod
    def _layer(block: WhisperBlock, cache: LayerCache, X, mask, idx, everyone, writes) -> torch.Tensor:
        B, G, _ = X.shape
        H, hd = block.n_heads, block.head_dim
        resid, h = block.attn_inputs(X)
        # bfloat16 caches over bfloat16 projections: the activations stay bfloat16 from the norm
        # to the residual add (no casts around each GEMM); the residual stream stays float32
        act = cache.k.dtype if cache.k.dtype == torch.bfloat16 and block.bf16_linears else X.dtype
        h = h.to(act)
        q = block.project_q(h).view(B, G, H, hd).transpose(1, 2).to(cache.k.dtype)
        k, v = block.project_kv(h)
        k = k.view(B, G, H, hd).transpose(1, 2).to(cache.k.dtype)
        v = v.view(B, G, H, hd).transpose(1, 2).to(cache.k.dtype)
        ck, cv = (cache.k, cache.v) if everyone else (cache.k[idx], cache.v[idx])
        scratch = cache.slots + 1  # the group's keys go after the cache slots and the trash slot
        if scratch + G <= ck.shape[2]:
            ck[:, :, scratch : scratch + G] = k
            cv[:, :, scratch : scratch + G] = v
            keys, values = ck[:, :, : scratch + G], cv[:, :, : scratch + G]
        else:  # a group longer than a step's (a trim's): concatenate
            keys, values = torch.cat([ck[:, :, :scratch], k], dim=2), torch.cat([cv[:, :, :scratch], v], dim=2)
        attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=1.0)
        y, _ = block.finish(attn.transpose(1, 2).reshape(B, G, H * hd).to(act), resid, [], [])
        if writes is not None:
            w_rows, w_slots, w_pos, src_i, src_j = writes
            cache.k[w_rows, :, w_slots] = k[src_i, :, src_j]
            cache.v[w_rows, :, w_slots] = v[src_i, :, src_j]
            cache.slot_pos[w_rows, w_slots] = w_pos
        return y
