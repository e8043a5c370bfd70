"""The re-encode baseline (whisper_streaming): every step encodes the whole window again, full attention.

Kept so every mode sits in one table. Per session it caches only the conv front end's tails and the
window's conv outputs (the convolutions are position-independent, so re-running them would give the
same numbers); the transformer layers run over the whole window each step, so a step costs
O(window^2) and grows until the window is trimmed. Output: the whole window, ``start == 0``.

Unlike whisper_streaming with faster-whisper, the window is not padded to 30 s: attention sees only
the frames that exist (as whisper.cpp's ``audio_ctx``). At 1500 frames both are the same computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from streamrt.encoders.base import EncoderOutput
from streamrt.encoders.whisper_front import ConvTail, WhisperBlock, conv_front_step, new_conv_tail
from streamrt.errors import ConfigError, InputError, LimitExceeded


@dataclass(eq=False)
class ReencodeState:
    conv: ConvTail
    history: torch.Tensor  # (max_window_frames, d_model) conv outputs of the window
    n_conv: int = 0
    trimmed_frames: int = 0
    finished: bool = False


class ReencodeWhisperEncoder:
    """Whisper encoder that re-encodes the whole window each step (``EncoderOutput.start == 0``)."""

    frame_ms = 20.0

    def __init__(self, encoder: nn.Module, *, auto_trim_keep_frames: int | None = None):
        self.encoder = encoder.eval()
        self.blocks = [WhisperBlock(layer) for layer in encoder.layers]
        self.d_model = int(encoder.conv2.out_channels)
        self.n_mels = int(encoder.conv1.in_channels)
        self.max_window_frames = int(encoder.embed_positions.num_embeddings)
        if auto_trim_keep_frames is not None and not 0 <= auto_trim_keep_frames < self.max_window_frames:
            raise ConfigError(
                f"auto_trim_keep_frames={auto_trim_keep_frames} must be in [0, {self.max_window_frames})"
            )
        self.auto_trim_keep_frames = auto_trim_keep_frames

    def describe(self) -> dict:
        return {"pattern": "Full()", "cache_slots": 0}

    def create_state(self) -> ReencodeState:
        return ReencodeState(
            conv=new_conv_tail(self.n_mels, self.d_model),
            history=torch.zeros(self.max_window_frames, self.d_model),
        )

    def window_frames(self, state: ReencodeState) -> int:
        return state.n_conv

    @torch.inference_mode()
    def step(self, mel: torch.Tensor, state: ReencodeState, *, final: bool = False) -> EncoderOutput:
        return self.step_batch([mel], [state], final=[final])[0]

    @torch.inference_mode()
    def step_batch(
        self, mels: Sequence[torch.Tensor], states: Sequence[ReencodeState], *, final: Sequence[bool] | None = None
    ) -> list[EncoderOutput]:
        final = list(final) if final is not None else [False] * len(states)
        for mel, state, fin in zip(mels, states, final):
            if state.finished:
                raise InputError("encoder step after the final step: the stream is finished")
            if mel.shape[0] != self.n_mels:
                raise InputError(f"mel has {mel.shape[0]} bins, the encoder expects {self.n_mels}")
            x = conv_front_step(self.encoder, state.conv, mel, fin)
            if state.n_conv + x.shape[0] > self.max_window_frames:
                if self.auto_trim_keep_frames is None:
                    raise LimitExceeded(
                        "max_window_frames",
                        self.max_window_frames,
                        state.n_conv + x.shape[0],
                        "frames",
                        what="Whisper encoder window (absolute positions end at 30 s; call trim() first)",
                        fatal=False,
                    )
                self._drop(state, state.n_conv - min(self.auto_trim_keep_frames, self.max_window_frames - x.shape[0]))
            state.history[state.n_conv : state.n_conv + x.shape[0]] = x
            state.n_conv += x.shape[0]
            state.finished = fin
        return [EncoderOutput(frames=f, start=0) for f in self._encode(states)]

    def _drop(self, state: ReencodeState, drop: int) -> None:
        kept = state.history[drop : state.n_conv].clone()
        state.history[: kept.shape[0]] = kept
        state.n_conv = kept.shape[0]
        state.trimmed_frames += drop

    @torch.inference_mode()
    def trim(self, state: ReencodeState, keep_last_frames: int) -> EncoderOutput:
        """Keep the window's last ``keep_last_frames`` frames at positions 0.. and re-encode them."""
        if not 0 <= keep_last_frames <= state.n_conv:
            raise InputError(f"trim: keep_last_frames={keep_last_frames} is outside [0, {state.n_conv}]")
        self._drop(state, state.n_conv - keep_last_frames)
        return EncoderOutput(frames=self._encode([state])[0], start=0)

    def _encode(self, states: Sequence[ReencodeState]) -> list[torch.Tensor]:
        """Full-attention pass over each session's window, batched with padding and a key mask."""
        lens = [s.n_conv for s in states]
        n = max(lens)
        if n == 0:
            return [torch.zeros(0, self.d_model) for _ in states]
        pos = self.encoder.embed_positions.weight[:n]
        x = torch.stack([s.history[:n] for s in states]) + pos
        key_ok = torch.arange(n)[None, :] < torch.tensor(lens)[:, None]
        mask = None if min(lens) == n else key_ok[:, None, None, :]
        B = len(states)
        for blk in self.blocks:
            resid, h = blk.attn_inputs(x)
            q = blk.project_q(h).view(B, n, blk.n_heads, blk.head_dim).transpose(1, 2)
            k, v = (t.view(B, n, blk.n_heads, blk.head_dim).transpose(1, 2) for t in blk.project_kv(h))
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
            x, _ = blk.finish(a.transpose(1, 2).reshape(B, n, -1), resid, [], lens)
        x = self.encoder.layer_norm(x)
        return [x[b, : lens[b]] for b in range(B)]
