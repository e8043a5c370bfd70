"""Greedy decoding of many streams at once (continuous batching over the token loop).

The batch's caches are gathered once (``batch_state.BatchDecodeState``). Every stream's forced
prefix and draft (its previous hypothesis) run in one padded parallel forward; the draft's rows
verify it (exact greedy). Then all streams still decoding advance together, one token each per
iteration, every projection and attention batched. A stream leaves at end-of-text, its token cap or
a repetition loop, or where the request's ``stop`` rule says the policy stops writing; once half
of the batch has left (``SHRINK_AT``), the batch shrinks to the live streams.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from streamrt.decoding.batch_state import BatchDecodeState
from streamrt.decoding.cross_attention import contiguous_groups, own_frames, window_buckets
from streamrt.decoding.kv_cache import DecoderCache
from streamrt.decoding.numerics import greedy_logprobs
from streamrt.decoding.requests import DecodeRequest, DecodeResult

__all__ = ["greedy_batch"]

# the token loop drops finished streams from its batch tensors once the live ones are at most this
# fraction of it. A shrink copies the live rows (reading and writing them, about two iterations'
# reads of them) to save the dead rows' reads in the iterations left, few under a loop limit: at
# 32 bench streams 0.5 beat 0.75 (decode 0.884x on identical states) and tied with 0.35
SHRINK_AT = 0.5

if TYPE_CHECKING:
    from streamrt.decoding.whisper_decoder import IncrementalWhisperDecoder


class _Run:
    def __init__(self, req: DecodeRequest, prefix: list[int], max_new: int, draft: list[int], keep: int):
        self.req = req
        self.prefix = prefix
        self.max_new = max_new
        self.draft = draft
        self.keep = keep  # prefix rows reused from the cache
        self.fed: list[int] = prefix[:keep]  # ids whose self-attention rows are valid, by position
        self.tokens: list[int] = []
        self.logprobs: list[float] = []
        self.rows: list[torch.Tensor] = []
        self.stopped: str | None = None
        self.alive = True

    def take(self, tok: int, logprob: float, row: torch.Tensor, eot: int) -> bool:
        """Greedy's choice ``tok`` (its log-probability, its alignment row); False when finished."""
        if len(self.tokens) >= self.max_new:
            self.stopped = "max_tokens"
            return False
        if tok == eot:
            self.stopped = "eot"
            return False
        self.tokens.append(tok)
        self.logprobs.append(logprob)
        self.rows.append(row)
        guard = self.req.guard
        if guard is not None:
            cut = guard.check(self.tokens)
            if cut is not None:
                del self.tokens[cut:], self.logprobs[cut:], self.rows[cut:]
                self.stopped = "repetition"
                return False
        stop = self.req.stop
        if stop is not None and stop(row):
            self.stopped = "policy"
            return False
        if len(self.tokens) >= self.max_new:
            self.stopped = "max_tokens"
            return False
        return True


def _choices(dec: "IncrementalWhisperDecoder", hidden: torch.Tensor) -> tuple[list[int], list[float]]:
    """Greedy tokens and their log-probabilities for rows of final hidden states (N, d_model). A
    bfloat16 projection hands its bfloat16 logits over as they are (half the bytes of the float32
    copy it would make); ``greedy_logprobs`` widens them a few rows at a time."""
    h = dec.final_norm(hidden)
    z = dec.logits(h.to(torch.bfloat16) if dec.vocab_in_bf16 else h)
    return greedy_logprobs(z, dec.logit_mask)


def checked_prefix(req: DecodeRequest) -> tuple[list[int], int]:
    """The request's forced prefix as ints, and how many tokens may follow it in the model's
    positions; ValueError for an empty prefix or one longer than the positions."""
    prefix = [int(t) for t in req.prefix]
    if not prefix:
        raise ValueError("the forced prefix must hold at least the start-of-transcript token")
    if len(prefix) > req.cache.max_tokens:
        raise ValueError(f"{len(prefix)} prefix tokens exceed the model's {req.cache.max_tokens} decoder positions")
    return prefix, max(0, min(req.max_new_tokens, req.cache.max_tokens - len(prefix)))


@torch.inference_mode()
def greedy_batch(dec: "IncrementalWhisperDecoder", requests: Sequence[DecodeRequest]) -> list[DecodeResult]:
    runs: list[_Run] = []
    for req in requests:
        prefix, max_new = checked_prefix(req)
        cache = req.cache
        keep = cache.reusable_prefix(prefix, across_encoder_changes=req.reuse_prefix_kv)
        keep = min(keep, len(prefix) - 1)  # the last prefix token must run to give logits
        runs.append(_Run(req, prefix, max_new, _draft(cache, prefix, max_new), keep))
    if not runs:
        return []
    # rows for the forced pass and a few generated tokens; the loop grows them when it needs more
    need = max(len(r.prefix) + max(len(r.draft), min(r.max_new, 16)) for r in runs)
    # state rows sorted by window length into window buckets (cross-attention reads each bucket's
    # rows up to its longest window), and within a bucket by the length of the forced pass, so the
    # forced pass's length groups (contiguous rows, which may span buckets) pad little
    own = [own_frames(dec, r.req.cache) for r in runs]
    by_window = sorted(range(len(runs)), key=lambda k: own[k])
    buckets = window_buckets([own[k] for k in by_window])
    order = [k for b in buckets for k in sorted(by_window[b], key=lambda k: _pass_length(runs[k]))]
    state = BatchDecodeState(dec, [runs[k].req.cache for k in order], [runs[k].keep for k in order], need, buckets)
    _force_prefixes(dec, state, [runs[k] for k in order])
    iterations = 0
    while True:
        live = [i for i, k in enumerate(order) if runs[k].alive]
        if not live:
            break
        capped = [i for i in live if runs[order[i]].req.max_iterations is not None
                  and iterations >= runs[order[i]].req.max_iterations]
        for i in capped:  # its last token is not fed (no row): the next decode's draft holds it
            runs[order[i]].alive, runs[order[i]].stopped = False, "iterations"
        if capped:
            live = [i for i in live if runs[order[i]].alive]
            if not live:
                break
        iterations += 1
        if len(live) <= SHRINK_AT * state.size:  # shrink the batch: finished streams stop costing
            for i, k in enumerate(order):
                if not runs[k].alive:
                    state.write_back(i, runs[k].fed)
            state.select(live)
            order = [order[i] for i in live]
            live = list(range(len(order)))
        S = state.size
        ids = torch.zeros(S, 1, dtype=torch.long)
        pos = torch.zeros(S, 1, dtype=torch.long)
        valid = torch.zeros(S, 1, dtype=torch.bool)
        for i in live:
            r = runs[order[i]]
            ids[i, 0], pos[i, 0], valid[i, 0] = r.tokens[-1], len(r.prefix) + len(r.tokens) - 1, True
        state.ensure_tokens(int(pos.max()) + 1)
        x, align = state.forward(ids, pos, valid)
        toks, lps = _choices(dec, x[live, 0])
        for i, tok, lp in zip(live, toks, lps):
            r = runs[order[i]]
            r.fed.append(r.tokens[-1])
            r.alive = r.take(tok, lp, align[i, 0, : r.req.cache.n_frames], dec.eot)
    for i, k in enumerate(order):
        state.write_back(i, runs[k].fed)
    out = []
    for r in runs:
        r.req.cache.last_sequence = r.prefix + r.tokens + ([dec.eot] if r.stopped == "eot" else [])
        r.req.cache.last_prefix_len = len(r.prefix)
        nf = r.req.cache.n_frames
        att = torch.stack(r.rows).numpy() if r.rows else np.zeros((0, nf), dtype=np.float32)
        out.append(DecodeResult(r.tokens, r.logprobs, att, r.stopped == "eot", r.stopped))
    return out


def _pass_length(run: _Run) -> int:
    return len(run.prefix) - run.keep + len(run.draft)


def _length_groups(lengths: list[int], max_waste: float = 0.3, free_padding: int = 64) -> list[slice]:
    """Split ``lengths`` (in row order) into contiguous groups whose padding to the group's longest
    adds at most ``max_waste`` of the group's real tokens, or at most ``free_padding`` tokens (one
    more forward costs more than that: it reads every layer's weights again)."""
    return contiguous_groups(lengths, max_waste, free_padding)


def _force_prefixes(dec: "IncrementalWhisperDecoder", state: BatchDecodeState, runs: list[_Run]) -> None:
    """Every stream's forced prefix and draft in parallel forwards (one per contiguous group of
    similar length, ``runs`` in state row order: a group may span window buckets, whose
    cross-attention runs per bucket inside the forward); the rows from the last prefix token on give
    the logits that verify the draft (greedy's own choice at every position, as if decoded one token
    at a time), and only they get alignment weights. The vocabulary projection runs once for the
    rows of every group: each call reads the whole projection matrix (40 MB in bfloat16 for
    Whisper), the memory read a step is bound by."""
    seqs = [r.prefix[r.keep :] + r.draft for r in runs]
    hidden, verify = [], []  # rows needing logits; (run, row count, alignment rows) in that order
    for group in _length_groups([len(s) for s in seqs]):
        g_runs, g_seqs = runs[group], seqs[group]
        Tq = max(len(s) for s in g_seqs)
        ids = torch.zeros(len(g_runs), Tq, dtype=torch.long)
        pos = torch.zeros(len(g_runs), Tq, dtype=torch.long)
        valid = torch.zeros(len(g_runs), Tq, dtype=torch.bool)
        for b, (r, s) in enumerate(zip(g_runs, g_seqs)):
            ids[b, : len(s)] = torch.as_tensor(s, dtype=torch.long)
            pos[b, : len(s)] = torch.arange(r.keep, r.keep + len(s))
            valid[b, : len(s)] = True
        firsts = [len(r.prefix) - 1 - r.keep for r in g_runs]  # the last prefix token's row: the first choice
        x, align = state.forward(ids, pos, valid, group, torch.as_tensor(firsts, dtype=torch.long))
        for b, (r, s, f) in enumerate(zip(g_runs, g_seqs, firsts)):
            hidden.append(x[b, f : len(s)])
            verify.append((r, len(s) - f, align[b, f:, : r.req.cache.n_frames]))
    toks, lps = _choices(dec, torch.cat(hidden))
    offset = 0
    for r, n, rows in verify:
        _verify(r, toks[offset : offset + n], lps[offset : offset + n], rows, dec.eot)
        offset += n


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


def _verify(run: _Run, toks: list[int], lps: list[float], rows: torch.Tensor, eot: int) -> None:
    """Greedy choices along the draft's rows; stops at the first disagreement. Row j was computed with
    draft[:j] as input, so it is valid only while every earlier choice equalled the draft."""
    draft = run.draft
    for j, (tok, lp) in enumerate(zip(toks, lps)):
        run.alive = run.take(tok, lp, rows[j], eot)
        agreed = j < len(draft) and run.alive and run.tokens[-1] == draft[j]
        if not agreed:
            # rows up to position len(prefix) - 1 + j are valid; the last chosen token is fed by the loop
            run.fed = run.prefix + draft[:j]
            return
