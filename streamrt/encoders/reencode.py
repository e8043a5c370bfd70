"""The re-encode baseline (whisper_streaming): every step encodes the whole window again, full attention.

Kept so every mode sits in one table. Per session it caches only the conv front end's tails and the
window's conv outputs (the convolutions are position-independent, so re-running them would give the
same numbers); the transformer layers run over the whole window each step, so a step costs
O(window^2) and grows until the window is trimmed. Output: the whole window, ``start == 0``.

Two variants (``pad_to_window``):
- False: attention sees only the frames that exist (as whisper.cpp's ``audio_ctx``); ``frames`` is the
  window. Cheaper, but Whisper was trained on 30 s windows and hallucinates on short unpadded ones
  (see docs/encoders.md for the measured WER).
- True (whisper_streaming with faster-whisper): the window's mel is padded with zero features to 30 s
  (3000 mel frames) and encoded whole every step, a constant O(30 s) cost. ``frames`` then has all
  ``max_window_frames`` rows; rows past ``window_frames(state)`` encode the padding and are what the
  decoder's cross-attention saw in training. The state keeps the window's mel instead of conv outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from streamrt.encoders.base import EncoderOutput, check_trims
from streamrt.encoders.whisper_front import ConvTail, WhisperBlock, conv_front_step, new_conv_tail
from streamrt.errors import ConfigError, InputError, LimitExceeded


@dataclass(eq=False)
class ReencodeState:
    conv: ConvTail
    history: torch.Tensor  # (max_window_frames, d_model) conv outputs of the window
    n_conv: int = 0
    mel: torch.Tensor | None = None  # pad_to_window: (n_mels, 2 * max_window_frames) mel of the window
    n_mel: int = 0
    trimmed_frames: int = 0
    finished: bool = False


class ReencodeWhisperEncoder:
    """Whisper encoder that re-encodes the whole window each step (``EncoderOutput.start == 0``)."""

    frame_ms = 20.0

    def __init__(
        self, encoder: nn.Module, *, auto_trim_keep_frames: int | None = None, pad_to_window: bool = False
    ):
        self.encoder = encoder.eval()
        self.pad_to_window = pad_to_window
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
        return {"pattern": "Full()", "cache_slots": 0, "pad_to_window": self.pad_to_window}

    def create_state(self) -> ReencodeState:
        if self.pad_to_window:
            return ReencodeState(
                conv=new_conv_tail(self.n_mels, self.d_model),
                history=torch.zeros(0, self.d_model),
                mel=torch.zeros(self.n_mels, 2 * self.max_window_frames),
            )
        return ReencodeState(
            conv=new_conv_tail(self.n_mels, self.d_model),
            history=torch.zeros(self.max_window_frames, self.d_model),
        )

    def window_frames(self, state: ReencodeState) -> int:
        if self.pad_to_window:
            return (state.n_mel + 1) // 2 if state.finished else max(0, (state.n_mel - 1) // 2)
        return state.n_conv

    def pending_frames(self, state: ReencodeState) -> int:
        """Always 0: every frame with a window position is in the output."""
        return 0

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
            if self.pad_to_window:
                self._append_mel(state, mel)
                state.finished = fin
                continue
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
        encoded = self._encode_padded(states) if self.pad_to_window else self._encode(states)
        return [EncoderOutput(frames=f, start=0) for f in encoded]

    def _append_mel(self, state: ReencodeState, mel: torch.Tensor) -> None:
        cap = 2 * self.max_window_frames
        if state.n_mel + mel.shape[1] > cap:
            if self.auto_trim_keep_frames is None:
                raise LimitExceeded(
                    "max_window_frames", self.max_window_frames, (state.n_mel + mel.shape[1] + 1) // 2, "frames",
                    what="Whisper encoder window (absolute positions end at 30 s; call trim() first)", fatal=False,
                )  # fmt: skip
            keep = min(2 * self.auto_trim_keep_frames, cap - mel.shape[1])
            self._drop_mel(state, state.n_mel - keep)
        state.mel[:, state.n_mel : state.n_mel + mel.shape[1]] = mel
        state.n_mel += mel.shape[1]

    def _drop_mel(self, state: ReencodeState, drop: int) -> None:
        kept = state.mel[:, drop : state.n_mel].clone()
        state.mel.zero_()
        state.mel[:, : kept.shape[1]] = kept
        state.n_mel = kept.shape[1]
        state.trimmed_frames += drop // 2

    def _encode_padded(self, states: Sequence[ReencodeState]) -> list[torch.Tensor]:
        """Whisper's own computation: the window's mel, zero features after it, 3000 frames, full attention."""
        enc = self.encoder
        for s in states:
            s.mel[:, s.n_mel :] = 0.0
        x = F.gelu(enc.conv1(torch.stack([s.mel for s in states])))
        x = F.gelu(enc.conv2(x)).transpose(1, 2) + enc.embed_positions.weight
        B, n = x.shape[0], x.shape[1]
        for blk in self.blocks:
            resid, h = blk.attn_inputs(x)
            q = blk.project_q(h).view(B, n, blk.n_heads, blk.head_dim).transpose(1, 2)
            k, v = (t.view(B, n, blk.n_heads, blk.head_dim).transpose(1, 2) for t in blk.project_kv(h))
            a = F.scaled_dot_product_attention(q, k, v, scale=1.0)
            x, _ = blk.finish(a.transpose(1, 2).reshape(B, n, -1), resid, [], [n] * B)
        return list(enc.layer_norm(x))

    def _drop(self, state: ReencodeState, drop: int) -> None:
        kept = state.history[drop : state.n_conv].clone()
        state.history[: kept.shape[0]] = kept
        state.n_conv = kept.shape[0]
        state.trimmed_frames += drop

    def trim(self, state: ReencodeState, keep_last_frames: int) -> EncoderOutput:
        """Keep the window's last ``keep_last_frames`` frames at positions 0.. and re-encode them."""
        return self.trim_batch([state], [keep_last_frames])[0]

    @torch.inference_mode()
    def trim_batch(self, states: Sequence[ReencodeState], keep_last_frames: Sequence[int]) -> list[EncoderOutput]:
        """``trim`` for many sessions, their windows re-encoded in one batched pass."""
        check_trims(self, states, keep_last_frames)
        for state, keep in zip(states, keep_last_frames):
            if self.pad_to_window:
                self._drop_mel(state, 2 * (self.window_frames(state) - keep))
            else:
                self._drop(state, state.n_conv - keep)
        frames = self._encode_padded(states) if self.pad_to_window else self._encode(states)
        return [EncoderOutput(frames=f, start=0) for f in frames]

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
