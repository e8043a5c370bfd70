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
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


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
    if tail.done:
        return torch.zeros(0, encoder.conv2.out_channels)
    conv1, conv2 = encoder.conv1, encoder.conv2
    tail.mel_count += mel.shape[1]
    buf = torch.cat([tail.mel, mel.to(tail.mel.dtype)], dim=1)
    if final:
        buf = F.pad(buf, (0, 1))  # conv1's right padding
    # buf[:, 0] is mel frame c1_count - 1; conv1 output t needs mel t-1..t+1
    n1 = buf.shape[1] - 2
    if n1 > 0:
        c1_new = F.gelu(F.conv1d(buf[None], conv1.weight, conv1.bias)[0])
        tail.c1 = torch.cat([tail.c1, c1_new], dim=1)
        tail.c1_count += n1
        buf = buf[:, n1:]
    tail.mel = buf
    c1 = tail.c1
    if final and tail.c1_count % 2 == 1:
        c1 = F.pad(c1, (0, 1))  # conv2's right padding when the conv1 length is odd
    # c1[:, 0] is conv1 frame 2 * out_count - 1; output j needs conv1 2j-1..2j+1
    n2 = (c1.shape[1] - 1) // 2
    out = torch.zeros(0, conv2.out_channels)
    if n2 > 0:
        out = F.gelu(F.conv1d(c1[None, :, : 2 * n2 + 1], conv2.weight, conv2.bias, stride=2)[0]).T
        tail.c1 = tail.c1[:, 2 * n2 :]
        tail.out_count += n2
    if final:
        tail.done = True
    return out


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

    def finish(
        self, attn: torch.Tensor, resid: torch.Tensor, extras: list[Any], counts: list[int]
    ) -> tuple[torch.Tensor, list[Any]]:
        layer = self.layer
        y = resid + self.attn.out_proj(attn)
        y = y + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(y))))
        return y, extras

    def new_extra(self) -> None:
        return None
