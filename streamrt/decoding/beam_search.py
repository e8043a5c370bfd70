"""Beam search over the uncommitted tail, batched across streams.

Whisper's own beam search (openai-whisper ``BeamSearchDecoder`` + ``MaximumLikelihoodRanker``),
run for many streams at once:

- every stream's forced prefix runs once, in the padded parallel forwards the greedy decode uses
  (``batch_state.BatchDecodeState``, one row per stream); its self-attention rows stay there and
  are shared by all of the stream's beams;
- then each iteration feeds the newest token of every live beam of every stream as one batched
  forward of (streams, beam_size) queries. Self-attention reads the stream's shared prefix rows and
  the beam's own tail rows (``_BeamTail``: preallocated, written by position, reordered by each
  step's parent indices; only the tail is copied) and merges the two softmaxes by their
  log-sum-exp. Cross-attention treats a stream's beams as ``beam_size`` queries of one row, so the
  window's keys and values are read once per stream, not once per beam;
- each live beam proposes its ``beam_size + 1`` most likely next tokens; per stream the candidates
  are ranked by their sum of log-probabilities, the first ``beam_size`` that do not end the text stay
  live (a token that completes a repetition loop ends its beam, cut back to the loop's first copy,
  as ``RepetitionGuard`` cuts greedy's tokens), and the ended ones ranked above the last live one
  are kept, up to ``round(beam_size * patience)``. The search of a stream ends once that many
  ended, its beams reach the token cap, its iteration budget is spent, or (``DecodeRequest.stop``)
  the best live beam's newest token is where the policy stops writing;
- the result is the best of the ended hypotheses (topped up with the best live ones to
  ``beam_size``), ranked by sum of log-probabilities over a length penalty (Whisper's ranker),
  with each token's log-probability and its alignment row (the cross-attention of the alignment
  heads at the query that predicted it), as greedy returns them.

``max_iterations`` keeps greedy's effect on what the policy sees: a beam decode takes part in at most
``len(draft) + max_iterations`` iterations (the draft: the last decode's tokens past this prefix), so
a hypothesis grows by at most ``max_iterations`` tokens per step past the previous one. Unlike greedy
it re-runs the draft's iterations: beam search has no draft to verify in one forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from streamrt.decoding.batch_greedy import SHRINK_AT, _draft, _length_groups, checked_prefix
from streamrt.decoding.batch_state import BatchDecodeState, cross_attention_and_mlp
from streamrt.decoding.cross_attention import CrossContext, additive_mask, attend_with_lse, own_frames, window_buckets
from streamrt.decoding.numerics import topk_logprobs
from streamrt.decoding.requests import DecodeRequest, DecodeResult

if TYPE_CHECKING:
    from streamrt.decoding.whisper_decoder import IncrementalWhisperDecoder

__all__ = ["BeamSettings", "beam_batch"]


@dataclass(frozen=True)
class BeamSettings:
    """beam_size: hypotheses kept per stream (1 is greedy; the decoder then takes greedy's path).
    patience: a stream's search ends once ``round(beam_size * patience)`` hypotheses have ended
        (Whisper's ``patience``; 1.0: beam_size of them).
    length_penalty: ranks the ended hypotheses by their sum of log-probabilities (end-of-text's
        included) divided by their length in tokens (None, Whisper's default; length at least 1) or by
        ``((5 + length) / 6) ** length_penalty`` (Google NMT's; 0 ranks by the sum alone)."""

    beam_size: int = 5
    patience: float = 1.0
    length_penalty: float | None = None

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if not self.patience > 0:
            raise ValueError(f"beam patience must be > 0, got {self.patience}")
        if self.length_penalty is not None and self.length_penalty < 0:
            raise ValueError(f"length_penalty must be >= 0 or None, got {self.length_penalty}")

    @property
    def max_candidates(self) -> int:
        """Ended hypotheses that end a stream's search."""
        return max(1, round(self.beam_size * self.patience))

    def rank(self, sum_logprob: float, length: int) -> float:
        """The ranking score of a hypothesis of ``length`` tokens (end-of-text not counted)."""
        if self.length_penalty is None:
            return sum_logprob / max(length, 1)
        return sum_logprob / ((5 + length) / 6) ** self.length_penalty


@dataclass
class _Beam:
    """One hypothesis: its tokens, their log-probabilities and alignment rows; ``score`` the sum of
    the log-probabilities (end-of-text's included once ended); ``end``: None (live), "eot" or
    "repetition"."""

    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    rows: list[torch.Tensor] = field(default_factory=list)
    score: float = 0.0
    end: str | None = None


class _Run:
    """One stream's search."""

    def __init__(self, req: DecodeRequest, prefix: list[int], max_new: int, budget: int | None, keep: int):
        self.req, self.prefix, self.max_new, self.keep = req, prefix, max_new, keep
        self.settings: BeamSettings = req.beam
        self.budget = budget  # iterations of the token loop this stream may take part in (None: no limit)
        self.live: list[_Beam] = [_Beam()]  # before the first choice: the prefix alone
        self.ended: dict[tuple[int, ...], _Beam] = {}
        self.iterations = 0
        self.stopped: str | None = None  # why the search ended: see _check_done
        self.alive = max_new > 0
        if not self.alive:
            self.stopped = "max_tokens"

    def advance(self, lps: np.ndarray, toks: np.ndarray, rows: Sequence[torch.Tensor], eot: int) -> list[int]:
        """One step of the search: ``lps``/``toks`` (live beams, k) the k most likely next tokens of
        each live beam with their log-probabilities, ``rows`` each live beam's alignment row for
        them. Returns, for each new live beam, the index of the beam it extends."""
        K = self.settings.beam_size
        guard = self.req.guard
        cands = []  # (score, parent, token, logprob), in parent then likelihood order: ties keep it
        for j, beam in enumerate(self.live):
            for lp, tok in zip(lps[j].tolist(), toks[j].tolist()):
                if lp != float("-inf"):
                    cands.append((beam.score + lp, j, int(tok), lp))
        cands.sort(key=lambda c: -c[0])
        live, sources, ended = [], [], []
        for score, j, tok, lp in cands:
            parent = self.live[j]
            if tok == eot:
                ended.append(_Beam(parent.tokens, parent.logprobs, parent.rows, score, "eot"))
            else:
                beam = _Beam(parent.tokens + [tok], parent.logprobs + [lp], parent.rows + [rows[j]], score)
                cut = guard.check(beam.tokens) if guard is not None else None
                if cut is not None:
                    ended.append(_Beam(beam.tokens[:cut], beam.logprobs[:cut], beam.rows[:cut],
                                       float(sum(beam.logprobs[:cut])), "repetition"))
                else:
                    live.append(beam)
                    sources.append(j)
            if len(live) >= K:
                break
        # the newly ended ones, best first, while fewer than max_candidates have ended
        for beam in sorted(ended, key=lambda b: -b.score):
            if len(self.ended) >= self.settings.max_candidates:
                break
            key = tuple(beam.tokens)
            if key not in self.ended or self.ended[key].score < beam.score:
                self.ended[key] = beam
        self.live = live
        self._check_done()
        return sources

    def _check_done(self) -> None:
        if len(self.ended) >= self.settings.max_candidates:
            self.stopped = "ended"
        elif not self.live:
            self.stopped = "ended"
        elif self.req.stop is not None and self.req.stop(self.live[0].rows[-1]):
            self.stopped = "policy"
        elif len(self.live[0].tokens) >= self.max_new:
            self.stopped = "max_tokens"
        elif self.budget is not None and self.iterations >= self.budget:
            self.stopped = "iterations"
        self.alive = self.stopped is None

    def best(self) -> tuple[_Beam, str | None]:
        """The chosen hypothesis and the result's ``stopped_by``."""
        if self.stopped == "policy":  # the best live beam, cut where the policy stops writing
            return self.live[0], "policy"
        cands = list(self.ended.values())
        if len(cands) < self.settings.beam_size:  # topped up with the best live ones (Whisper)
            for beam in sorted(self.live, key=lambda b: -b.score):
                if not beam.tokens:
                    continue
                cands.append(beam)
                if len(cands) >= self.settings.beam_size:
                    break
        if not cands:
            return _Beam(), self.stopped
        rank = self.settings.rank
        best = max(cands, key=lambda b: rank(b.score, len(b.tokens)))
        return best, best.end or ("beam" if self.stopped == "ended" else self.stopped)


class _BeamTail:
    """Self-attention keys/values of the beams' generated tokens: (layers, streams * beam_size, heads,
    rows, head_dim), allocated once for the longest search; row t holds the (t+1)-th generated token,
    the prefix's rows stay in the stream's row of ``BatchDecodeState``."""

    def __init__(self, dec: "IncrementalWhisperDecoder", n_rows: int, n_tokens: int):
        shape = (dec.n_layers, n_rows, dec.n_heads, max(1, n_tokens), dec.head_dim)
        self.k = torch.zeros(shape, dtype=dec.dtype)
        self.v = torch.zeros(shape, dtype=dec.dtype)

    def reorder(self, src: torch.Tensor, n: int) -> None:
        """Row r takes the first ``n`` tail rows of row ``src[r]`` (its beam's parent)."""
        if torch.equal(src, torch.arange(len(src))):
            return
        self.k[:, :, :, :n] = self.k[:, src, :, :n]
        self.v[:, :, :, :n] = self.v[:, src, :, :n]

    def select(self, rows: torch.Tensor) -> None:
        self.k, self.v = self.k[:, rows], self.v[:, rows]


def _logits(dec: "IncrementalWhisperDecoder", hidden: torch.Tensor) -> torch.Tensor:
    h = dec.final_norm(hidden)
    return dec.logits(h.to(torch.bfloat16) if dec.vocab_in_bf16 else h)


@torch.inference_mode()
def beam_batch(dec: "IncrementalWhisperDecoder", requests: Sequence[DecodeRequest]) -> list[DecodeResult]:
    """Beam search for every request (each with ``beam`` set), all streams in one batch."""
    runs: list[_Run] = []
    for req in requests:
        if req.beam is None:
            raise ValueError("a beam search request needs its beam settings")
        prefix, max_new = checked_prefix(req)
        cache = req.cache
        budget = None
        if req.max_iterations is not None:
            budget = len(_draft(cache, prefix, max_new)) + req.max_iterations
        keep = min(cache.reusable_prefix(prefix, across_encoder_changes=req.reuse_prefix_kv), len(prefix) - 1)
        runs.append(_Run(req, prefix, max_new, budget, keep))
    if not runs:
        return []
    own = [own_frames(dec, r.req.cache) for r in runs]
    by_window = sorted(range(len(runs)), key=lambda k: own[k])
    buckets = window_buckets([own[k] for k in by_window])
    order = [k for b in buckets for k in sorted(by_window[b], key=lambda k: len(runs[k].prefix) - runs[k].keep)]
    state = BatchDecodeState(dec, [runs[k].req.cache for k in order], [runs[k].keep for k in order],
                             max(len(r.prefix) for r in runs), buckets)
    _first_choices(dec, state, [runs[k] for k in order])
    for i, k in enumerate(order):  # the prefix rows are final: the next decode may reuse them
        state.write_back(i, runs[k].prefix)
    _search(dec, state, order, runs)
    out = []
    for r in runs:
        beam, stopped = r.best()
        r.req.cache.last_sequence = r.prefix + beam.tokens + ([dec.eot] if beam.end == "eot" else [])
        r.req.cache.last_prefix_len = len(r.prefix)
        nf = r.req.cache.n_frames
        att = torch.stack(beam.rows).numpy() if beam.rows else np.zeros((0, nf), dtype=np.float32)
        out.append(DecodeResult(list(beam.tokens), list(beam.logprobs), att, beam.end == "eot", stopped))
    return out


def _first_choices(dec: "IncrementalWhisperDecoder", state: BatchDecodeState, runs: list[_Run]) -> None:
    """Every stream's forced prefix in parallel forwards (one per contiguous group of similar length,
    ``runs`` in state row order); the last prefix token's row gives each stream its first beams."""
    hidden, rows = [], []
    for group in _length_groups([len(r.prefix) - r.keep for r in runs]):
        g_runs = runs[group]
        Tq = max(len(r.prefix) - r.keep for r in g_runs)
        ids = torch.zeros(len(g_runs), Tq, dtype=torch.long)
        pos = torch.zeros(len(g_runs), Tq, dtype=torch.long)
        valid = torch.zeros(len(g_runs), Tq, dtype=torch.bool)
        for b, r in enumerate(g_runs):
            n = len(r.prefix) - r.keep
            ids[b, :n] = torch.as_tensor(r.prefix[r.keep :], dtype=torch.long)
            pos[b, :n] = torch.arange(r.keep, len(r.prefix))
            valid[b, :n] = True
        lasts = torch.as_tensor([len(r.prefix) - 1 - r.keep for r in g_runs], dtype=torch.long)
        x, align = state.forward(ids, pos, valid, group, lasts)
        for b, (r, f) in enumerate(zip(g_runs, lasts.tolist())):
            hidden.append(x[b, f])
            rows.append(align[b, f, : r.req.cache.n_frames])
    K = max(r.settings.beam_size for r in runs)
    lps, toks = topk_logprobs(_logits(dec, torch.stack(hidden)), dec.logit_mask, min(K + 1, dec.vocab))
    lps, toks = lps.numpy(), toks.numpy()
    for b, r in enumerate(runs):
        if r.alive:
            k = min(r.settings.beam_size + 1, lps.shape[1])
            r.advance(lps[b : b + 1, :k], toks[b : b + 1, :k], [rows[b]], dec.eot)


def _search(dec: "IncrementalWhisperDecoder", state: BatchDecodeState, order: list[int], runs: list[_Run]) -> None:
    """The token loop: every live beam of every live stream advances one token per iteration."""
    K = max(runs[k].settings.beam_size for k in order)
    n_tail = max((min(r.max_new, r.budget + 1 if r.budget is not None else r.max_new) for r in runs), default=1)
    tail = _BeamTail(dec, len(order) * K, n_tail - 1)
    prefix_len = torch.as_tensor([len(runs[k].prefix) for k in order], dtype=torch.long)
    t = 0  # tail row of this iteration's tokens (each live beam holds t + 1 tokens)
    while True:
        live = [i for i, k in enumerate(order) if runs[k].alive]
        if not live:
            return
        G = len(order)
        if len(live) <= SHRINK_AT * G:  # drop the finished streams' rows
            state.select(live)
            tail.select(torch.as_tensor([i * K + j for i in live for j in range(K)], dtype=torch.long))
            order, prefix_len = [order[i] for i in live], prefix_len[live]
            G, live = len(order), list(range(len(order)))
        ids = torch.zeros(G, K, dtype=torch.long)
        valid = torch.zeros(G, K, dtype=torch.bool)
        for i in live:
            for j, beam in enumerate(runs[order[i]].live):
                ids[i, j], valid[i, j] = beam.tokens[-1], True
        pos = torch.where(valid, prefix_len[:, None] + t, torch.zeros_like(ids))
        x, align = _forward(state, tail, ids, pos, valid, prefix_len, t)
        bi, ji = valid.nonzero(as_tuple=True)
        lps, toks = topk_logprobs(_logits(dec, x[bi, ji]), dec.logit_mask, min(K + 1, dec.vocab))
        lps, toks = lps.numpy(), toks.numpy()
        src = torch.arange(G * K)
        at = 0
        for i in live:
            r = runs[order[i]]
            n = len(r.live)
            r.iterations += 1
            nf = r.req.cache.n_frames
            k = min(r.settings.beam_size + 1, lps.shape[1])
            parents = r.advance(lps[at : at + n, :k], toks[at : at + n, :k], [align[i, j, :nf] for j in range(n)],
                                dec.eot)
            at += n
            for j, p in enumerate(parents):
                src[i * K + j] = i * K + p
        t += 1
        if any(runs[k].alive for k in order):
            tail.reorder(src, t)


def _forward(state: BatchDecodeState, tail: _BeamTail, ids: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor,
             prefix_len: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens ``ids`` (G, K) of every stream's K beams at positions ``pos``, their self-attention rows
    written to tail row ``t``. ``BatchDecodeState.forward``'s math with per-beam self-attention: each
    query attends to its stream's prefix rows and its beam's tail rows [0, t], the two softmaxes
    merged by their log-sum-exp; cross-attention runs with the K beams as K queries of their
    stream's row. Returns hidden states (G, K, d_model) before the final norm and the alignment
    heads' attention (G, K, frames)."""
    dec = state.dec
    G, K = ids.shape
    H, hd, d = dec.n_heads, dec.head_dim, dec.d_model
    x = dec.embed_tokens[ids] + dec.embed_positions[pos]  # (G, K, d)
    bi, ji = valid.nonzero(as_tuple=True)
    Tp = int(prefix_len.max())
    prefix_mask = additive_mask((torch.arange(Tp)[None, :] < prefix_len[:, None])[:, None, None, :], dec.dtype)
    tail_mask = torch.zeros(G * K, 1, 1, t + 1, dtype=dec.dtype)
    cross = CrossContext(state, slice(None), bi, ji, G, K)
    align = torch.zeros(G, K, cross.frames, dtype=torch.float32)
    act = torch.bfloat16 if G * K > 4 and state.bf16_linears else x.dtype
    for i, layer in enumerate(dec.layers):
        sa = layer.self_attn
        h = layer.self_attn_layer_norm(x)
        q = (sa.q_proj(h) * sa.scaling).view(G, K, H, hd)
        tail.k[i][:, :, t] = sa.k_proj(h).view(G * K, H, hd)
        tail.v[i][:, :, t] = sa.v_proj(h).view(G * K, H, hd)
        o1, l1 = attend_with_lse(q.transpose(1, 2), state.self_k[i][:, :, :Tp], state.self_v[i][:, :, :Tp],
                                 prefix_mask)  # (G, H, K, hd), (G, H, K)
        o2, l2 = attend_with_lse(q.reshape(G * K, H, 1, hd), tail.k[i][:, :, : t + 1], tail.v[i][:, :, : t + 1],
                                 tail_mask)  # (G * K, H, 1, hd), (G * K, H, 1)
        o2 = o2.view(G, K, H, hd).transpose(1, 2)
        a = torch.sigmoid(l1.float() - l2.view(G, K, H).transpose(1, 2).float()).unsqueeze(-1)
        o = (o2 + a.to(o2.dtype) * (o1 - o2)).transpose(1, 2).reshape(G, K, d)
        x = x + sa.out_proj(o)
        x = cross_attention_and_mlp(layer, i, x, cross, align, act)
    if dec.alignment_heads:
        align /= len(dec.alignment_heads)
    return x, align
