"""Incremental greedy decoding over a transformers Whisper decoder's weights.

The decoder is shared (weights only); all state lives in a per-stream ``DecoderCache``:

    dec = IncrementalWhisperDecoder(bundle.model, alignment_heads=bundle.alignment_heads, ...)
    cache = dec.create_cache()
    dec.update_cross(cache, encoder_output)           # after every encoder step / trim
    result = dec.greedy(cache, forced_prefix, max_new_tokens=...)

``greedy`` forces ``forced_prefix`` (sot sequence + committed tokens), reusing the self-attention
rows of its longest common prefix with the previous call, then decodes the uncommitted tail token by
token. For every generated token it returns the cross-attention of the model's alignment heads at
the position that predicted it (AlignAtt's and Whisper's timing convention), averaged over heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from streamrt.decoding.kv_cache import DecoderCache
from streamrt.decoding.repetition import RepetitionGuard


@dataclass(frozen=True)
class DecodeResult:
    """tokens: generated ids (eot excluded); logprobs: their log-probabilities; attention:
    (len(tokens), n_frames) alignment-head attention of each token; ended: eot was produced;
    stopped_by: None, "eot", "max_tokens" or "repetition"."""

    tokens: list[int]
    logprobs: list[float]
    attention: np.ndarray
    ended: bool
    stopped_by: str | None


class IncrementalWhisperDecoder:
    """Greedy decoder with preallocated caches. ``model``: a WhisperForConditionalGeneration.

    alignment_heads: (layer, head) pairs whose cross-attention aligns tokens with audio (all heads
        of the upper half of the layers when empty, as Whisper does).
    suppress_tokens: ids never generated. Every special id above ``eot`` is suppressed as well
        (timestamps, task and language tokens): decoding runs in no-timestamps mode.
    max_frames: cross-attention cache rows (the encoder's max_window_frames).
    """

    def __init__(
        self,
        model,
        *,
        eot: int,
        alignment_heads: Sequence[tuple[int, int]] = (),
        suppress_tokens: Sequence[int] = (),
        max_frames: int = 1500,
    ):
        dec = model.model.decoder
        cfg = model.config
        self.eot = int(eot)
        self.embed_tokens = dec.embed_tokens.weight
        self.embed_positions = dec.embed_positions.weight
        self.layers = list(dec.layers)
        self.final_norm = dec.layer_norm
        self.proj = model.proj_out.weight
        self.n_layers = len(self.layers)
        self.n_heads = cfg.decoder_attention_heads
        self.d_model = cfg.d_model
        self.head_dim = self.d_model // self.n_heads
        self.max_tokens = self.embed_positions.shape[0]
        self.max_frames = int(max_frames)
        self.vocab = self.proj.shape[0]
        heads = list(alignment_heads) or [
            (layer, h) for layer in range(self.n_layers // 2, self.n_layers) for h in range(self.n_heads)
        ]
        self.alignment_heads = tuple((int(a), int(b)) for a, b in heads)
        self._heads_by_layer: dict[int, list[int]] = {}
        for layer, h in self.alignment_heads:
            self._heads_by_layer.setdefault(layer, []).append(h)
        mask = torch.zeros(self.vocab)
        ids = [t for t in suppress_tokens if 0 <= t < self.vocab]
        mask[ids] = -math.inf
        mask[self.eot + 1 :] = -math.inf
        self.logit_mask = mask
        self.dtype = self.proj.dtype

    # ---- state ---------------------------------------------------------------------------------
    def create_cache(self) -> DecoderCache:
        return DecoderCache.allocate(
            self.n_layers, self.n_heads, self.head_dim, self.max_tokens, self.max_frames, self.dtype
        )

    @torch.inference_mode()
    def update_cross(self, cache: DecoderCache, frames: torch.Tensor, start: int) -> None:
        """Project encoder ``frames`` (T, d_model) into cross-attention rows [start, start+T).

        The window then ends at start+T (rows past it are stale and ignored)."""
        end = start + frames.shape[0]
        if start < 0 or end > cache.max_frames:
            raise ValueError(f"encoder frames [{start}, {end}) do not fit the {cache.max_frames}-frame cache")
        if frames.shape[0]:
            x = frames.to(self.dtype)
            for i, layer in enumerate(self.layers):
                attn = layer.encoder_attn
                k = attn.k_proj(x).view(-1, self.n_heads, self.head_dim).transpose(0, 1)
                v = attn.v_proj(x).view(-1, self.n_heads, self.head_dim).transpose(0, 1)
                cache.cross_k[i, :, start:end] = k
                cache.cross_v[i, :, start:end] = v
        if end != cache.n_frames or frames.shape[0]:
            cache.cross_version += 1
        cache.n_frames = end

    # ---- forward -------------------------------------------------------------------------------
    @torch.inference_mode()
    def forward(self, cache: DecoderCache, ids: Sequence[int], pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``ids`` at positions [pos, pos+len); write their self-attention rows.

        Returns (logits of the last position (vocab,), alignment attention (len(ids), n_frames)).
        Rows [0, pos) of the self-attention cache must already be valid.
        """
        n = len(ids)
        end = pos + n
        if end > cache.max_tokens:
            raise ValueError(f"{end} decoder positions exceed the model's {cache.max_tokens}")
        nf = cache.n_frames
        idx = torch.as_tensor(list(ids), dtype=torch.long)
        x = self.embed_tokens[idx] + self.embed_positions[pos:end]  # (n, d)
        causal = None
        if n > 1:
            causal = torch.ones(n, end, dtype=torch.bool).tril(diagonal=pos)
        align = torch.zeros(n, nf, dtype=self.dtype)
        for i, layer in enumerate(self.layers):
            # self-attention over the cache
            sa = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            q = self._heads(sa.q_proj(h) * sa.scaling)
            cache.self_k[i, :, pos:end] = self._heads(sa.k_proj(h))
            cache.self_v[i, :, pos:end] = self._heads(sa.v_proj(h))
            o = F.scaled_dot_product_attention(
                q, cache.self_k[i, :, :end], cache.self_v[i, :, :end], attn_mask=causal, scale=1.0
            )
            x = x + sa.out_proj(o.transpose(0, 1).reshape(n, self.d_model))
            # cross-attention over the window; alignment heads' weights kept
            ca = layer.encoder_attn
            h = layer.encoder_attn_layer_norm(x)
            q = self._heads(ca.q_proj(h) * ca.scaling)
            k, v = cache.cross_k[i, :, :nf], cache.cross_v[i, :, :nf]
            heads = self._heads_by_layer.get(i)
            if heads and nf:
                w = torch.softmax(q @ k.transpose(1, 2), dim=-1)  # (H, n, nf)
                o = w @ v
                align += w[heads].sum(0)
            elif nf:
                o = F.scaled_dot_product_attention(q, k, v, scale=1.0)
            else:
                o = torch.zeros_like(q)
            x = x + ca.out_proj(o.transpose(0, 1).reshape(n, self.d_model))
            # feed-forward
            h = layer.final_layer_norm(x)
            x = x + layer.fc2(layer.activation_fn(layer.fc1(h)))
        last = self.final_norm(x[-1])
        logits = last @ self.proj.T
        if self.alignment_heads:
            align /= len(self.alignment_heads)
        del cache.token_ids[pos:]
        cache.token_ids.extend(int(t) for t in ids)
        cache.token_cross_version = cache.cross_version
        return logits, align

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(-1, self.n_heads, self.head_dim).transpose(0, 1)

    # ---- greedy --------------------------------------------------------------------------------
    @torch.inference_mode()
    def greedy(
        self,
        cache: DecoderCache,
        prefix: Sequence[int],
        *,
        max_new_tokens: int,
        reuse_prefix_kv: bool = True,
        guard: RepetitionGuard | None = None,
    ) -> DecodeResult:
        """Force ``prefix`` then decode greedily until eot, ``max_new_tokens``, or a repetition loop.

        ``reuse_prefix_kv``: keep cached self-attention rows of the prefix even when the encoder
        window changed since they were computed (see ``DecoderCache.reusable_prefix``).
        """
        prefix = [int(t) for t in prefix]
        if not prefix:
            raise ValueError("the forced prefix must hold at least the start-of-transcript token")
        room = cache.max_tokens - len(prefix)
        max_new = max(0, min(max_new_tokens, room))
        keep = cache.reusable_prefix(prefix, across_encoder_changes=reuse_prefix_kv)
        keep = min(keep, len(prefix) - 1)  # the last prefix token must run to give logits
        cache.keep_tokens(keep)
        logits, align = self.forward(cache, prefix[keep:], keep)
        tokens: list[int] = []
        logprobs: list[float] = []
        rows: list[torch.Tensor] = []
        stopped = None
        ended = False
        row = align[-1]
        while True:
            if len(tokens) >= max_new:
                stopped = "max_tokens"
                break
            logits = logits + self.logit_mask
            lp = torch.log_softmax(logits, dim=-1)
            tok = int(torch.argmax(lp))
            if tok == self.eot:
                stopped, ended = "eot", True
                break
            tokens.append(tok)
            logprobs.append(float(lp[tok]))
            rows.append(row)
            if guard is not None:
                cut = guard.check(tokens)
                if cut is not None:
                    del tokens[cut:], logprobs[cut:], rows[cut:]
                    stopped = "repetition"
                    break
            if len(tokens) >= max_new:
                stopped = "max_tokens"
                break
            logits, a = self.forward(cache, [tok], len(prefix) + len(tokens) - 1)
            row = a[-1]
        nf = cache.n_frames
        att = torch.stack(rows).numpy() if rows else np.zeros((0, nf), dtype=np.float32)
        return DecodeResult(tokens, logprobs, att, ended, stopped)
