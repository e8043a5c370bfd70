"""Whisper's encoder pieces, used by every Whisper mode: the conv front end with cached tails, and a
layer adapter that exposes a transformers ``WhisperEncoderLayer``'s weights to the cache machinery.

The front end is ``gelu(conv1(mel))`` (kernel 3, padding 1) then ``gelu(conv2(.))`` (kernel 3, stride 2,
padding 1). Output frame ``j`` needs mel frames up to ``2j + 2``, so a step emits the frames its mel
completes; the tails (at most 2 mel frames and 2 conv1 frames) are kept, so the receptive field is
exact at every chunk edge and a step costs O(chunk). ``final=True`` applies the right zero padding,
giving exactly the offline conv output (``ceil(M / 2)`` frames for M mel frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from streamrt.quant.bf16 import runs_in_bf16


@dataclass(eq=False)
class ConvTail:
    """Per-session conv state: unconsumed mel frames and conv1 frames (with the left zero padding)."""

    mel: torch.Tensor  # (n_mels, <= 2 + new) mel frames from index mel_start
    c1: torch.Tensor  # (d_model, <= 2 + new) gelu(conv1) frames from index c1_start
    mel_count: int = 0
    c1_count: int = 0
    out_count: int = 0
    done: bool = False


def new_conv_tail(n_mels: int, d_model: int) -> ConvTail:
    # one zero frame in front of each buffer is the convs' left padding
    return ConvTail(mel=torch.zeros(n_mels, 1), c1=torch.zeros(d_model, 1))


def conv_front_step(encoder: nn.Module, tail: ConvTail, mel: torch.Tensor, final: bool) -> torch.Tensor:
    """New mel frames (n_mels, T) -> the (T_out, d_model) conv outputs they complete (no positions)."""
    return conv_front_steps(encoder, [tail], [mel], [final])[0]


def conv_front_steps(
    encoder: nn.Module, tails: Sequence[ConvTail], mels: Sequence[torch.Tensor], finals: Sequence[bool]
) -> list[torch.Tensor]:
    """``conv_front_step`` for many sessions: each conv runs once over all of them, their buffers
    right-padded with zeros to the longest (a padded column only reaches outputs past the session's
    own, which are dropped), so the result is the per-session one."""
    conv1, conv2 = encoder.conv1, encoder.conv2
    live = [i for i, t in enumerate(tails) if not t.done]
    outs = [torch.zeros(0, conv2.out_channels) for _ in tails]
    bufs = {}
    for i in live:
        tail = tails[i]
        tail.mel_count += mels[i].shape[1]
        buf = torch.cat([tail.mel, mels[i].to(tail.mel.dtype)], dim=1)
        bufs[i] = F.pad(buf, (0, 1)) if finals[i] else buf  # conv1's right padding
    # buf[:, 0] is mel frame c1_count - 1; conv1 output t needs mel t-1..t+1
    c1_new = _batched_conv([bufs[i] for i in live], conv1.weight, conv1.bias, stride=1)
    c1s = {}
    for i, c1_i in zip(live, c1_new):
        tail, buf = tails[i], bufs[i]
        n1 = buf.shape[1] - 2
        if n1 > 0:
            tail.c1 = torch.cat([tail.c1, c1_i], dim=1)
            tail.c1_count += n1
            buf = buf[:, n1:]
        tail.mel = buf
        c1 = tail.c1
        if finals[i] and tail.c1_count % 2 == 1:
            c1 = F.pad(c1, (0, 1))  # conv2's right padding when the conv1 length is odd
        # c1[:, 0] is conv1 frame 2 * out_count - 1; output j needs conv1 2j-1..2j+1
        c1s[i] = c1[:, : 2 * ((c1.shape[1] - 1) // 2) + 1]
    c2_new = _batched_conv([c1s[i] for i in live], conv2.weight, conv2.bias, stride=2)
    for i, c2_i in zip(live, c2_new):
        tail = tails[i]
        n2 = (c1s[i].shape[1] - 1) // 2
        if n2 > 0:
            outs[i] = c2_i.T
            tail.c1 = tail.c1[:, 2 * n2 :]
            tail.out_count += n2
        if finals[i]:
            tail.done = True
    return outs


def _batched_conv(xs: list[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor, stride: int) -> list[torch.Tensor]:
    """``gelu(conv1d(x))`` (kernel 3, no padding) of each (channels, T_i), as one conv over the
    right-padded batch; each result cut to its own ``(T_i - 3) // stride + 1`` columns (empty when
    T_i < 3)."""
    n_out = [max(0, (x.shape[1] - 3) // stride + 1) for x in xs]
    todo = [k for k, n in enumerate(n_out) if n > 0]
    res = [torch.zeros(weight.shape[0], 0) for _ in xs]
    if not todo:
        return res
    width = max(xs[k].shape[1] for k in todo)
    batch = torch.stack([F.pad(xs[k], (0, width - xs[k].shape[1])) for k in todo])
    y = F.gelu(F.conv1d(batch, weight, bias, stride=stride))
    for row, k in enumerate(todo):
        res[k] = y[row, :, : n_out[k]]
    return res


class WhisperBlock:
    """Adapter over one transformers ``WhisperEncoderLayer`` (weights shared, nothing stored per session)."""

    def __init__(self, layer: nn.Module):
        attn = layer.self_attn
        self.layer = layer
        self.attn = attn
        self.n_heads = attn.num_heads
        self.head_dim = attn.head_dim
        self.scaling = attn.scaling

    def attn_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, self.layer.self_attn_layer_norm(x)

    def project_q(self, h: torch.Tensor) -> torch.Tensor:
        return self.attn.q_proj(h) * self.scaling

    def project_kv(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attn.k_proj(h), self.attn.v_proj(h)

    @property
    def bf16_linears(self) -> bool:
        """Every projection is a ``quant.bf16.BFloat16Linear``: a caller may keep the activations
        between them in bfloat16 (see ``finish``)."""
        return runs_in_bf16(self.layer)

    def finish(
        self, attn: torch.Tensor, resid: torch.Tensor, extras: list[Any], counts: list[int]
    ) -> tuple[torch.Tensor, list[Any]]:
        """The attention output projection, residual and MLP. The MLP runs in ``attn``'s dtype (a
        bfloat16 ``attn`` only where ``bf16_linears``); the residual stream stays float32."""
        layer = self.layer
        y = resid + self.attn.out_proj(attn)
        h = layer.final_layer_norm(y).to(attn.dtype)
        y = y + layer.fc2(layer.activation_fn(layer.fc1(h)))
        return y, extras

    def new_extra(self) -> None:
        return None
