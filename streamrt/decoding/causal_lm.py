"""Our forward pass for Llama-family causal LMs (Llama, SmolLM, Mistral, Qwen2/3, Gemma), gpt-fast style.

``CausalLM.from_hf(model)`` takes a transformers causal LM's weights (shared, not copied: the fused
q/k/v and gate/up projections are the only new tensors) into plain modules: RMSNorm, RoPE with the
config's theta and scaling (transformers' own ``inv_freq``), grouped-query attention, SwiGLU (GELU for
Gemma). Its ``nn.Linear`` layers are what ``streamrt.quant.quantize`` replaces, unchanged.

One ``forward`` runs a whole scheduler step: the rows of every conversation in it (a decode row each,
plus prefill chunks) go through the projections together, so the weights are read once per step;
attention is per conversation against ``KVCache``, preallocated ``(slots, kv_heads, max_seq,
head_dim)`` per layer and written by position. A ``StepPlan`` says which rows belong to which slot
and position; it is built once per step and shared by all layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from streamrt.errors import ConfigError, LimitExceeded

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3", "gemma")


@dataclass(frozen=True)
class LmConfig:
    """The architecture numbers our forward needs (read from a transformers config)."""

    model_type: str
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    rms_eps: float
    norm_offset: float  # Gemma's RMSNorm scales by (1 + weight)
    activation: str  # "silu" or "gelu_tanh"
    qk_norm: bool  # Qwen3 normalises q and k per head
    max_positions: int

    @classmethod
    def from_hf(cls, config: Any) -> LmConfig:
        kind = config.model_type
        if kind not in SUPPORTED:
            raise ConfigError(f"model_type {kind!r} is not supported by the causal-LM decoder; supported: {', '.join(SUPPORTED)}")
        if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", kind == "mistral"):
            raise ConfigError(f"{kind}: sliding-window attention ({config.sliding_window} tokens) is not supported")
        heads = config.num_attention_heads
        act = config.hidden_act
        if act not in ("silu", "gelu_pytorch_tanh", "gelu"):
            raise ConfigError(f"{kind}: activation {act!r} is not supported (silu, gelu_pytorch_tanh)")
        gemma = kind == "gemma"
        return cls(
            model_type=kind, vocab_size=config.vocab_size, hidden=config.hidden_size,
            layers=config.num_hidden_layers, heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            rms_eps=config.rms_norm_eps, norm_offset=1.0 if gemma else 0.0,
            activation="silu" if act == "silu" else "gelu_tanh", qk_norm=kind == "qwen3",
            max_positions=config.max_position_embeddings,
        )  # fmt: skip


class RMSNorm(nn.Module):
    def __init__(self, weight: torch.Tensor, eps: float, offset: float):
        super().__init__()
        self.weight = nn.Parameter((weight.detach().float() + offset), requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


def _fuse(*linears: nn.Linear) -> nn.Linear:
    """One Linear whose output is the given ones' outputs side by side."""
    w = torch.cat([lin.weight.detach() for lin in linears])
    out = nn.Linear(w.shape[1], w.shape[0], bias=linears[0].bias is not None)
    out.weight = nn.Parameter(w.float(), requires_grad=False)
    if out.bias is not None:
        out.bias = nn.Parameter(torch.cat([lin.bias.detach() for lin in linears]).float(), requires_grad=False)
    return out


class Block(nn.Module):
    def __init__(self, cfg: LmConfig, hf_layer: Any):
        super().__init__()
        att, mlp = hf_layer.self_attn, hf_layer.mlp
        self.input_norm = RMSNorm(hf_layer.input_layernorm.weight, cfg.rms_eps, cfg.norm_offset)
        self.wqkv = _fuse(att.q_proj, att.k_proj, att.v_proj)
        self.wo = att.o_proj
        self.post_norm = RMSNorm(hf_layer.post_attention_layernorm.weight, cfg.rms_eps, cfg.norm_offset)
        self.w_gate_up = _fuse(mlp.gate_proj, mlp.up_proj)
        self.w_down = mlp.down_proj
        self.q_norm = RMSNorm(att.q_norm.weight, cfg.rms_eps, 0.0) if cfg.qk_norm else None
        self.k_norm = RMSNorm(att.k_norm.weight, cfg.rms_eps, 0.0) if cfg.qk_norm else None


@dataclass
class StepPlan:
    """Which rows of a step belong to which conversation. Built once per step, read by every layer.

    rows: ``(slot, start, length)`` per segment, in row order; a segment writes positions
    ``start .. start+length-1`` of its slot and attends to ``0 .. start+length-1``. Segments of
    length 1 (decode rows) are attended together in one batched call.
    """

    slot_idx: torch.Tensor  # (N,) slot of each row
    pos_idx: torch.Tensor  # (N,) position of each row
    cos: torch.Tensor  # (N, 1, head_dim)
    sin: torch.Tensor
    decode_rows: torch.Tensor | None  # row indices of the length-1 segments
    decode_slots: slice | torch.Tensor  # their slots (a slice when contiguous: a view, no copy)
    decode_len: int  # keys the decode group attends to (max position + 1)
    decode_mask: torch.Tensor | None  # (B, 1, 1, decode_len) True where a key is visible
    prefills: list[tuple[int, int, int, int]]  # (first row, slot, start, length) of longer segments


class KVCache:
    """Keys and values per layer, ``(slots, kv_heads, max_seq, head_dim)``, written by position.

    Entries past a conversation's length are never read (attention masks by position), so truncating a
    conversation is just lowering its length; the next write overwrites them.
    """

    def __init__(self, cfg: LmConfig, slots: int, max_seq: int, dtype: torch.dtype = torch.float32):
        shape = (slots, cfg.kv_heads, max_seq, cfg.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype) for _ in range(cfg.layers)]
        self.v = [torch.zeros(shape, dtype=dtype) for _ in range(cfg.layers)]
        self.slots = slots
        self.max_seq = max_seq

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.k, *self.v))


class CausalLM(nn.Module):
    """The shared model: weights only. State (the KV cache, positions) is passed to ``forward``."""

    def __init__(self, cfg: LmConfig, hf_model: Any):
        super().__init__()
        self.cfg = cfg
        base = hf_model.model
        self.embed = base.embed_tokens
        self.blocks = nn.ModuleList(Block(cfg, layer) for layer in base.layers)
        self.norm = RMSNorm(base.norm.weight, cfg.rms_eps, cfg.norm_offset)
        self.lm_head = hf_model.lm_head
        rotary = base.rotary_emb
        self.register_buffer("inv_freq", rotary.inv_freq.detach().float().clone(), persistent=False)
        self.rope_scaling = float(getattr(rotary, "attention_scaling", 1.0))
        if getattr(rotary, "rope_type", "default") in ("dynamic", "longrope"):
            raise ConfigError(f"rope_type {rotary.rope_type!r} changes with the length; not supported")
        self._cos, self._sin = torch.empty(0), torch.empty(0)

    @classmethod
    def from_hf(cls, hf_model: Any) -> CausalLM:
        return cls(LmConfig.from_hf(hf_model.config), hf_model).eval()

    def new_cache(self, slots: int, max_seq: int, dtype: torch.dtype = torch.float32) -> KVCache:
        if max_seq > self.cfg.max_positions:
            raise LimitExceeded("max_context_tokens", self.cfg.max_positions, max_seq, "tokens",
                                what="context length (the model's max_position_embeddings)")
        self._rope_table(max_seq)
        return KVCache(self.cfg, slots, max_seq, dtype)

    def _rope_table(self, n: int) -> None:
        if self._cos.shape[0] >= n:
            return
        freqs = torch.arange(n, dtype=torch.float32)[:, None] * self.inv_freq[None, :]  # as transformers
        emb = torch.cat((freqs, freqs), dim=-1)
        self._cos, self._sin = emb.cos() * self.rope_scaling, emb.sin() * self.rope_scaling

    def plan(self, segments: list[tuple[int, int, int]], cache: KVCache) -> StepPlan:
        """The plan for ``segments`` = [(slot, start, length)], rows in that order."""
        slots, positions, decode_rows, prefills, row = [], [], [], [], 0
        for slot, start, length in segments:
            if start + length > cache.max_seq:
                raise LimitExceeded("max_context_tokens", cache.max_seq, start + length, "tokens",
                                    what="conversation context")
            slots += [slot] * length
            positions += range(start, start + length)
            (decode_rows.append(row) if length == 1 else prefills.append((row, slot, start, length)))
            row += length
        slot_idx, pos_idx = torch.tensor(slots), torch.tensor(positions)
        plan = StepPlan(slot_idx, pos_idx, self._cos[pos_idx][:, None, :], self._sin[pos_idx][:, None, :],
                        None, slice(0, 0), 0, None, prefills)
        if decode_rows:
            rows = torch.tensor(decode_rows)
            d_slots, d_pos = slot_idx[rows], pos_idx[rows]
            first, n = int(d_slots[0]), len(decode_rows)
            contiguous = bool(torch.equal(d_slots, torch.arange(first, first + n)))
            plan.decode_rows = rows
            plan.decode_slots = slice(first, first + n) if contiguous else d_slots
            plan.decode_len = int(d_pos.max()) + 1
            plan.decode_mask = (torch.arange(plan.decode_len)[None, :] <= d_pos[:, None])[:, None, None, :]
        return plan

    def forward(self, tokens: torch.Tensor, plan: StepPlan, cache: KVCache, out_rows: torch.Tensor) -> torch.Tensor:
        """Float32 logits ``(len(out_rows), vocab)`` of the given rows after running ``tokens`` (N,)."""
        cfg = self.cfg
        x = self.embed(tokens)  # transformers' module (Gemma's scales by sqrt(hidden) itself)
        for i, block in enumerate(self.blocks):
            x = x + self._attention(block, block.input_norm(x), plan, cache.k[i], cache.v[i])
            h = block.w_gate_up(block.post_norm(x))
            gate, up = h.chunk(2, dim=-1)
            act = F.silu(gate) if cfg.activation == "silu" else F.gelu(gate, approximate="tanh")
            x = x + block.w_down(act * up)
        return self.lm_head(self.norm(x[out_rows])).float()

    def _attention(self, block: Block, h: torch.Tensor, plan: StepPlan, k_cache: torch.Tensor,
                   v_cache: torch.Tensor) -> torch.Tensor:
        cfg, n = self.cfg, h.shape[0]
        q_dim, kv_dim = cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
        qkv = block.wqkv(h)
        qk = qkv[:, : q_dim + kv_dim].view(n, cfg.heads + cfg.kv_heads, cfg.head_dim)
        v = qkv[:, q_dim + kv_dim:].view(n, cfg.kv_heads, cfg.head_dim)
        if block.q_norm is not None:
            qk = torch.cat((block.q_norm(qk[:, : cfg.heads]), block.k_norm(qk[:, cfg.heads:])), dim=1)
        qk = _rope(qk, plan.cos, plan.sin)  # q and k rotate together: one pass instead of two
        q, k = qk[:, : cfg.heads], qk[:, cfg.heads:]
        k_cache[plan.slot_idx, :, plan.pos_idx] = k.to(k_cache.dtype)
        v_cache[plan.slot_idx, :, plan.pos_idx] = v.to(v_cache.dtype)
        out = torch.empty(n, cfg.heads, cfg.head_dim, dtype=q.dtype)
        if plan.decode_rows is not None:
            rows, length = plan.decode_rows, plan.decode_len
            keys = k_cache[plan.decode_slots, :, :length]
            values = v_cache[plan.decode_slots, :, :length]
            # the query heads sharing a key/value head become that head's query rows (all at one
            # position, so the mask broadcasts): no key/value expansion, and the fast path for bfloat16
            b, group = len(rows), cfg.heads // cfg.kv_heads
            qd = q[rows].reshape(b, cfg.kv_heads, group, cfg.head_dim).to(keys.dtype)
            o = F.scaled_dot_product_attention(qd, keys, values, attn_mask=plan.decode_mask)
            o = o.reshape(b, cfg.heads, 1, cfg.head_dim)
            out[rows] = o[:, :, 0, :].to(out.dtype)
        for row, slot, start, length in plan.prefills:
            end = start + length
            keys = k_cache[slot: slot + 1, :, :end]
            values = v_cache[slot: slot + 1, :, :end]
            qp = q[row: row + length].transpose(0, 1)[None].to(keys.dtype)  # (1, heads, T, head_dim)
            if start == 0:
                o = F.scaled_dot_product_attention(qp, keys, values, is_causal=True, enable_gqa=True)
            else:
                mask = torch.arange(end)[None, :] <= torch.arange(start, end)[:, None]
                o = F.scaled_dot_product_attention(qp, keys, values, attn_mask=mask, enable_gqa=True)
            out[row: row + length] = o[0].transpose(0, 1).to(out.dtype)
        return block.wo(out.view(n, q_dim))


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding in transformers' layout (the two halves of each head rotate together)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
