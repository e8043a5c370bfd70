"""A cache-aware Conformer encoder (Stateful Conformer / NeMo FastConformer style) for trainable weights.

Front end: ``subsampling`` consecutive mel frames stacked and projected (causal; a tail of fewer than
``subsampling`` mel frames is cached). Each layer: half FFN, limited-context self-attention (block
``chunk_frames`` + ``left_frames``, or sliding ``left_frames`` + ``lookahead_frames`` when
``chunk_frames`` is None), a convolution module with a *causal* depthwise conv whose last
``conv_kernel - 1`` inputs are cached per session, half FFN, LayerNorm. LayerNorm replaces the
BatchNorm of the paper's conv module (streaming-friendly, no batch statistics). No absolute positions:
the stream never has to be re-based, and ``trim`` only drops frames from the window.

It runs on the same cache machinery as the Whisper modes (``streamrt.encoders.cache``), so step,
step_batch, create_state and the exactness tests are shared. ``forward`` (alias ``forward_full``) is the plain
full-sequence reference with the same mask (explicit softmax, zero-padded causal conv).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from streamrt.encoders.base import AttentionPattern, BlockCausal, EncoderOutput, Sliding, pattern_mask
from streamrt.encoders.cache import LayerCache, ResidentBatch, new_layer_cache, run_layers
from streamrt.errors import ConfigError, InputError, LimitExceeded


@dataclass(frozen=True)
class ConformerConfig:
    """Sizes in frames are encoder frames (``subsampling`` x 10 ms each)."""

    n_mels: int = 80
    d_model: int = 144
    n_heads: int = 4
    n_layers: int = 4
    ffn_mult: int = 4
    conv_kernel: int = 9
    subsampling: int = 4
    chunk_frames: int | None = 8
    left_frames: int = 64
    lookahead_frames: int = 0
    max_window_frames: int = 1500
    substep_frames: int = 32

    def pattern(self) -> AttentionPattern:
        if self.chunk_frames is not None:
            return BlockCausal(self.chunk_frames, self.left_frames)
        return Sliding(self.left_frames, self.lookahead_frames)


class ConformerLayer(nn.Module):
    """One Conformer block; also the ``AttentionBlock`` the cache machinery drives."""

    def __init__(self, cfg: ConformerConfig):
        super().__init__()
        d, f = cfg.d_model, cfg.d_model * cfg.ffn_mult
        self.n_heads, self.head_dim, self.kernel = cfg.n_heads, d // cfg.n_heads, cfg.conv_kernel
        self.ff1 = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, f), nn.SiLU(), nn.Linear(f, d))
        self.ff2 = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, f), nn.SiLU(), nn.Linear(f, d))
        self.att_norm = nn.LayerNorm(d)
        self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))
        self.conv_norm = nn.LayerNorm(d)
        self.pw1 = nn.Linear(d, 2 * d)
        self.dw = nn.Conv1d(d, d, cfg.conv_kernel, groups=d)
        self.dw_norm = nn.LayerNorm(d)
        self.pw2 = nn.Linear(d, d)
        self.final_norm = nn.LayerNorm(d)

    # AttentionBlock protocol
    def attn_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        resid = x + 0.5 * self.ff1(x)
        return resid, self.att_norm(resid)

    def project_q(self, h: torch.Tensor) -> torch.Tensor:
        return self.q(h) * self.head_dim**-0.5

    def project_kv(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k(h), self.v(h)

    def new_extra(self) -> torch.Tensor:
        return torch.zeros(self.kernel - 1, self.dw.in_channels)  # causal conv's left zero padding

    def finish(
        self, attn: torch.Tensor, resid: torch.Tensor, extras: list[Any], counts: list[int]
    ) -> tuple[torch.Tensor, list[Any]]:
        y = resid + self.out(attn)
        z = F.glu(self.pw1(self.conv_norm(y)), dim=-1)  # (B, R, d)
        B, R, d = z.shape
        seq = torch.zeros(B, self.kernel - 1 + R, d)
        for b in range(B):
            seq[b, : self.kernel - 1] = extras[b]
            seq[b, self.kernel - 1 : self.kernel - 1 + counts[b]] = z[b, : counts[b]]
        new_extras = [seq[b, counts[b] : counts[b] + self.kernel - 1].clone() for b in range(B)]
        c = self.dw(seq.transpose(1, 2)).transpose(1, 2)
        y = y + self.pw2(F.silu(self.dw_norm(c)))
        y = y + 0.5 * self.ff2(y)
        return self.final_norm(y), new_extras


@dataclass(eq=False)
class ConformerState:
    mel_tail: torch.Tensor  # (n_mels, < subsampling) mel frames not yet stacked
    layers: list[LayerCache]
    history: torch.Tensor  # (max_window_frames, d_model) outputs in the window (for trim)
    n_window: int = 0
    trimmed_frames: int = 0
    finished: bool = False


class CacheAwareConformer(nn.Module):
    """Trainable cache-aware Conformer; ``forward_full`` for training/reference, ``step`` for streaming.

    Construct with a ``ConformerConfig`` (random init); load trained weights with ``load_state_dict``.
    """

    def __init__(self, cfg: ConformerConfig = ConformerConfig()):
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ConfigError(f"d_model={cfg.d_model} is not divisible by n_heads={cfg.n_heads}")
        if cfg.left_frames is None or cfg.left_frames < 0:
            raise ConfigError(f"left_frames must be >= 0 (got {cfg.left_frames}); the cache is bounded by it")
        self.cfg = cfg
        self.pattern = cfg.pattern()
        self.frame_ms = 10.0 * cfg.subsampling
        self.d_model = cfg.d_model
        self.max_window_frames = cfg.max_window_frames
        self.embed = nn.Linear(cfg.n_mels * cfg.subsampling, cfg.d_model)
        self.layers = nn.ModuleList(ConformerLayer(cfg) for _ in range(cfg.n_layers))
        self.slots = self.pattern.cache_frames(cfg.substep_frames)
        self._resident = ResidentBatch()

    def _stack(self, mel: torch.Tensor) -> torch.Tensor:
        """(n_mels, s*T) -> (T, d_model): frame t = mel frames s*t .. s*t+s-1."""
        s = self.cfg.subsampling
        return self.embed(mel.T.reshape(-1, s * mel.shape[0]))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Training pass and reference: (n_mels, M) -> (ceil(M / s), d_model), one pass over the whole
        sequence with the streaming mask (explicit softmax, zero-padded causal conv). Differentiable."""
        s = self.cfg.subsampling
        x = self._stack(F.pad(mel, (0, (-mel.shape[1]) % s)))[None]
        n = x.shape[1]
        mask = pattern_mask(self.pattern, n)
        for layer in self.layers:
            resid, h = layer.attn_inputs(x)
            heads = lambda t: t.view(1, n, layer.n_heads, layer.head_dim).transpose(1, 2)  # noqa: E731
            q, k, v = heads(layer.project_q(h)), *(heads(t) for t in layer.project_kv(h))
            w = torch.softmax((q @ k.transpose(-1, -2)).masked_fill(~mask, float("-inf")), dim=-1)
            y = resid + layer.out((w @ v).transpose(1, 2).reshape(1, n, -1))
            z = F.glu(layer.pw1(layer.conv_norm(y)), dim=-1).transpose(1, 2)
            c = layer.dw(F.pad(z, (layer.kernel - 1, 0))).transpose(1, 2)
            y = y + layer.pw2(F.silu(layer.dw_norm(c)))
            x = layer.final_norm(y + 0.5 * layer.ff2(y))
        return x[0]

    def forward_full(self, mel: torch.Tensor) -> torch.Tensor:
        """``forward`` without gradients: the reference streaming must reproduce."""
        with torch.no_grad():
            return self.forward(mel)

    def create_state(self) -> ConformerState:
        return ConformerState(
            mel_tail=torch.zeros(self.cfg.n_mels, 0),
            layers=[new_layer_cache(layer, self.slots, self.d_model) for layer in self.layers],
            history=torch.zeros(self.max_window_frames, self.d_model),
        )

    def window_frames(self, state: ConformerState) -> int:
        return state.n_window

    @torch.inference_mode()
    def step(self, mel: torch.Tensor, state: ConformerState, *, final: bool = False) -> EncoderOutput:
        return self.step_batch([mel], [state], final=[final])[0]

    @torch.inference_mode()
    def step_batch(
        self, mels: Sequence[torch.Tensor], states: Sequence[ConformerState], *, final: Sequence[bool] | None = None
    ) -> list[EncoderOutput]:
        final = list(final) if final is not None else [False] * len(states)
        s, news = self.cfg.subsampling, []
        for mel, state, fin in zip(mels, states, final):
            if state.finished:
                raise InputError("encoder step after the final step: the stream is finished")
            if mel.shape[0] != self.cfg.n_mels:
                raise InputError(f"mel has {mel.shape[0]} bins, the encoder expects {self.cfg.n_mels}")
            buf = torch.cat([state.mel_tail, mel], dim=1)
            if fin:
                buf = F.pad(buf, (0, (-buf.shape[1]) % s))
            n = buf.shape[1] // s
            state.mel_tail = buf[:, n * s :]
            news.append(self._stack(buf[:, : n * s]))
            state.finished = fin
        sessions = [st.layers for st in states]
        per_layer = self._resident.stack(sessions)
        outs = run_layers(list(self.layers), per_layer, self.pattern, news, final, self.cfg.substep_frames)
        self._resident.unstack(per_layer, sessions)
        result = []
        for state, out in zip(states, outs):
            n = out.shape[0]
            if state.n_window + n > self.max_window_frames:
                raise LimitExceeded(
                    "max_window_frames", self.max_window_frames, state.n_window + n, "frames",
                    what="Conformer output window (call trim() to drop committed frames)", fatal=False,
                )  # fmt: skip
            start = state.n_window
            state.history[start : start + n] = out
            state.n_window += n
            result.append(EncoderOutput(frames=out, start=start))
        return result

    def trim_batch(self, states: Sequence[ConformerState], keep_last_frames: Sequence[int]) -> list[EncoderOutput]:
        """``trim`` for each session (nothing is re-run, so there is nothing to batch)."""
        return [self.trim(s, k) for s, k in zip(states, keep_last_frames)]

    def trim(self, state: ConformerState, keep_last_frames: int) -> EncoderOutput:
        """Drop the window's start. No positions to re-base: caches continue exactly, nothing is re-run."""
        if not 0 <= keep_last_frames <= state.n_window:
            raise InputError(f"trim: keep_last_frames={keep_last_frames} is outside [0, {state.n_window}]")
        drop = state.n_window - keep_last_frames
        kept = state.history[drop : state.n_window].clone()
        state.history[:keep_last_frames] = kept
        state.n_window = keep_last_frames
        state.trimmed_frames += drop
        return EncoderOutput(frames=kept, start=0)
