"""Incremental greedy decoding over a transformers Whisper decoder's weights.

The decoder is shared (weights only); all state lives in a per-stream ``DecoderCache``:

    dec = IncrementalWhisperDecoder(bundle.model, alignment_heads=bundle.alignment_heads, ...)
    cache = dec.create_cache()
    dec.update_cross(cache, encoder_output)           # after every encoder step / trim
    [result] = dec.greedy_many([DecodeRequest(cache, forced_prefix, max_new_tokens)])

A decode forces ``forced_prefix`` (sot sequence + committed tokens), reusing the self-attention
rows of its longest common prefix with the previous call, then decodes the uncommitted tail token by
token. For every generated token it returns the cross-attention of the model's alignment heads at
the position that predicted it (AlignAtt's and Whisper's timing convention), averaged over heads.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from streamrt.decoding.batch_greedy import greedy_batch
from streamrt.decoding.beam_search import beam_batch
from streamrt.decoding.kv_cache import DecoderCache
from streamrt.decoding.requests import DecodeRequest, DecodeResult
from streamrt.quant.bf16 import runs_in_bf16


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
        # the vocabulary projection: a float Linear (tied to the embeddings) or a quantized module
        self.proj_out = model.proj_out
        self.proj = getattr(model.proj_out, "weight", None)
        # a bfloat16 projection takes bfloat16 rows and gives bfloat16 logits (see batch_greedy._choices)
        self.vocab_in_bf16 = self.proj is None and runs_in_bf16(model.proj_out)
        self.n_layers = len(self.layers)
        self.n_heads = cfg.decoder_attention_heads
        self.d_model = cfg.d_model
        self.head_dim = self.d_model // self.n_heads
        self.max_tokens = self.embed_positions.shape[0]
        self.max_frames = int(max_frames)
        self.vocab = int(model.proj_out.out_features)
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
        self.dtype = self.embed_tokens.dtype
        # cross-attention of batched decodes runs in this dtype (bfloat16 halves the bytes read
        # per token, the loop's bound); see set_cross_dtype
        self.cross_dtype = self.dtype
        self.pad_k: torch.Tensor | None = None
        self.pad_v: torch.Tensor | None = None
        self._pad_cast: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]] = {}
        self._pad_keys_f32: dict[torch.dtype, torch.Tensor] = {}

    @torch.inference_mode()
    def set_padding(self, pad_frames: torch.Tensor | None) -> None:
        """Frames (max_frames, d_model) shown to cross-attention after the window's end, or None.

        Whisper's decoder was trained on 30 s windows whose end is padding; on a short unpadded
        window it tends to hallucinate and loop. With padding, rows [window end, max_frames) of
        every cache hold these frames' keys/values (e.g. the encoder's output for silence), so the
        decoder sees a 30 s input whatever the encoder mode."""
        self._pad_cast, self._pad_keys_f32 = {}, {}
        if pad_frames is None:
            self.pad_k = self.pad_v = None
            return
        if pad_frames.shape[0] != self.max_frames:
            raise ValueError(f"padding needs {self.max_frames} frames, got {pad_frames.shape[0]}")
        ks, vs = [], []
        x = pad_frames.to(self.dtype)
        for layer in self.layers:
            attn = layer.encoder_attn
            ks.append(attn.k_proj(x).view(-1, self.n_heads, self.head_dim).transpose(0, 1))
            vs.append(attn.v_proj(x).view(-1, self.n_heads, self.head_dim).transpose(0, 1))
        self.pad_k, self.pad_v = torch.stack(ks), torch.stack(vs)

    @property
    def bf16_linears(self) -> bool:
        """Every projection of every layer is a ``quant.bf16.BFloat16Linear`` (bfloat16 in, bfloat16
        out): batched forwards may then keep activations between them in bfloat16."""
        return all(runs_in_bf16(layer) for layer in self.layers)

    def set_cross_dtype(self, dtype: torch.dtype) -> None:
        """Run batched cross-attention in ``dtype`` (float32 or bfloat16): keys, values and queries
        are cast, softmax statistics stay float32. Caches created from now on store their
        cross-attention rows in ``dtype``."""
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"cross-attention dtype must be float32 or bfloat16, got {dtype}")
        self.cross_dtype = dtype

    def padding_kv(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The padding keys/values (layers, heads, max_frames, head_dim) in ``dtype`` (cast once)."""
        if self.pad_k is None:
            raise ValueError("no padding is set")
        if dtype == self.pad_k.dtype:
            return self.pad_k, self.pad_v
        if dtype not in self._pad_cast:
            self._pad_cast[dtype] = (self.pad_k.to(dtype).contiguous(), self.pad_v.to(dtype).contiguous())
        return self._pad_cast[dtype]

    def padding_keys_float32(self, dtype: torch.dtype) -> torch.Tensor:
        """The padding keys as attention in ``dtype`` sees them (rounded to it), in float32: for
        float32 products that must agree with that attention's softmax (cast once)."""
        if dtype not in self._pad_keys_f32:
            self._pad_keys_f32[dtype] = self.padding_kv(dtype)[0].float()
        return self._pad_keys_f32[dtype]

    # ---- state ---------------------------------------------------------------------------------
    def create_cache(self) -> DecoderCache:
        return DecoderCache.allocate(
            self.n_layers, self.n_heads, self.head_dim, self.max_tokens, self.max_frames, self.dtype,
            cross_dtype=self.cross_dtype,
        )

    @torch.inference_mode()
    def update_cross(self, cache: DecoderCache, frames: torch.Tensor, start: int) -> None:
        """Project encoder ``frames`` (T, d_model) into cross-attention rows [start, start+T).

        The window then ends at start+T (rows past it are stale and ignored)."""
        self.update_cross_many([(cache, frames, start)])

    @torch.inference_mode()
    def update_cross_many(self, updates: Sequence[tuple[DecoderCache, torch.Tensor, int]]) -> None:
        """``update_cross`` for many streams: (cache, frames, start) each; the key/value projections
        of every stream's new frames run as one product per layer."""
        for cache, frames, start in updates:
            end = start + frames.shape[0]
            if start < 0 or end > cache.max_frames:
                raise ValueError(f"encoder frames [{start}, {end}) do not fit the {cache.max_frames}-frame cache")
        with_frames = [(c, f, s) for c, f, s in updates if f.shape[0]]
        if with_frames:
            x = torch.cat([f for _, f, _ in with_frames]).to(self.dtype)
            for i, layer in enumerate(self.layers):
                attn = layer.encoder_attn
                k = attn.k_proj(x).view(-1, self.n_heads, self.head_dim).transpose(0, 1)
                v = attn.v_proj(x).view(-1, self.n_heads, self.head_dim).transpose(0, 1)
                row = 0
                for cache, frames, start in with_frames:
                    n = frames.shape[0]
                    cache.cross_k[i, :, start : start + n] = k[:, row : row + n]
                    cache.cross_v[i, :, start : start + n] = v[:, row : row + n]
                    row += n
        for cache, frames, start in updates:
            self._finish_cross(cache, start + frames.shape[0])

    def _finish_cross(self, cache: DecoderCache, end: int) -> None:
        """The window now ends at ``end``: padding rows after it, counters."""
        if self.pad_k is not None:
            # rows [n_valid, max) hold padding once filled; refill only the rows real frames left
            hi = cache.n_valid if cache.n_frames == cache.max_frames else cache.max_frames
            if end < hi:
                pad_k, pad_v = self.padding_kv(cache.cross_k.dtype)
                cache.cross_k[:, :, end:hi] = pad_k[:, :, end:hi]
                cache.cross_v[:, :, end:hi] = pad_v[:, :, end:hi]
            cache.n_frames = cache.max_frames
        else:
            cache.n_frames = end
        cache.n_valid = end
        cache.cross_version += 1

    # ---- forward -------------------------------------------------------------------------------
    @torch.inference_mode()
    def forward(self, cache: DecoderCache, ids: Sequence[int], pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``ids`` at positions [pos, pos+len); write their self-attention rows.

        Returns (logits of the last position (vocab,), alignment attention (len(ids), n_frames)).
        Rows [0, pos) of the self-attention cache must already be valid.
        """
        x, align = self.forward_hidden(cache, ids, pos)
        return self.logits(self.final_norm(x[-1])), align

    @torch.inference_mode()
    def forward_hidden(self, cache: DecoderCache, ids: Sequence[int], pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` without the vocabulary: (hidden states (len(ids), d_model) before the final
        norm, alignment attention (len(ids), n_frames)); writes the same cache rows."""
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
            k, v = cache.cross_k[i, :, :nf].to(q.dtype), cache.cross_v[i, :, :nf].to(q.dtype)
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
        if self.alignment_heads:
            align /= len(self.alignment_heads)
        del cache.token_ids[pos:]
        cache.token_ids.extend(int(t) for t in ids)
        cache.token_cross_version = cache.cross_version
        return x, align

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of final-normed hidden states (..., d_model)."""
        if self.proj is not None:
            return h @ self.proj.T
        return self.proj_out(h)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(-1, self.n_heads, self.head_dim).transpose(0, 1)

    # ---- decoding ------------------------------------------------------------------------------
    def greedy_many(self, requests: Sequence[DecodeRequest]) -> list[DecodeResult]:
        """Greedy decodes of many streams at once: the token loop runs batched (see batch_greedy).
        Requests whose ``beam`` has a beam_size above 1 are decoded by beam search instead, all of
        them in one batch of their own (``beam_search.beam_batch``); the results keep the requests'
        order."""
        searched = [r.beam is not None and r.beam.beam_size > 1 for r in requests]
        if not any(searched):
            return greedy_batch(self, requests)
        greedy = iter(greedy_batch(self, [r for r, b in zip(requests, searched) if not b]))
        beams = iter(beam_batch(self, [r for r, b in zip(requests, searched) if b]))
        return [next(beams) if b else next(greedy) for b in searched]
