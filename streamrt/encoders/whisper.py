"""Whisper's encoder with activation caching: block-causal (CarelessWhisper) and sliding-window
(Moonshine v2) attention, on the weights of a transformers ``WhisperEncoder``, plus ``make_encoder``.

Shared: the weights (``model.model.encoder``). Per session: ``WhisperEncoderState`` from
``create_state()`` (conv tails, one preallocated ``LayerCache`` per layer, and the conv outputs of the
current window for ``trim``). Window positions are Whisper's absolute positions: at most
``max_window_frames`` (1500 = 30 s). Before a step would pass it the caller must ``trim`` (keep the
last frames, e.g. from the last committed word or pause); otherwise ``step`` raises ``LimitExceeded``,
unless the encoder was made with ``auto_trim_keep_frames`` (then it trims itself and that step's
output has ``start == 0``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from streamrt.encoders.base import AttentionPattern, EncoderOutput, check_trims
from streamrt.encoders.cache import (
    LayerCache,
    ResidentBatch,
    new_layer_cache,
    reset_layer_cache,
    run_layers,
)
from streamrt.encoders.whisper_front import ConvTail, WhisperBlock, conv_front_steps, new_conv_tail
from streamrt.errors import ConfigError, InputError, LimitExceeded


def whisper_encoder_module(whisper_model: nn.Module) -> nn.Module:
    """The ``WhisperEncoder`` inside a WhisperForConditionalGeneration / WhisperModel / WhisperEncoder."""
    for path in ("model.encoder", "encoder", ""):
        obj = whisper_model
        for part in filter(None, path.split(".")):
            obj = getattr(obj, part, None)
        if obj is not None and hasattr(obj, "conv1") and hasattr(obj, "layers"):
            return obj
    raise ConfigError(f"{type(whisper_model).__name__} has no Whisper encoder (conv1, conv2, layers)")


@torch.inference_mode()
def silence_tail(encoder: nn.Module, mel_value: float = 0.0) -> torch.Tensor:
    """(max_window_frames, d_model): the full encoder's output on a 30 s window of constant features
    ``mel_value`` (0.0: all-zero features; about -0.8 is the floor Whisper's zero-padded audio has
    after normalisation, which the streaming task uses).

    Whisper's decoder was trained to cross-attend to 1500 frames, most of them encoded padding; given
    only T real frames it hallucinates (docs/encoders.md). Cross-attending to
    ``cat([window, tail[T:]])`` restores that context at no per-step cost. (The real padded encoding of
    rows T.. would attend the content; this fixed one does not: an approximation, measured.)
    """
    enc = whisper_encoder_module(encoder)
    mel = torch.full((1, enc.conv1.in_channels, 2 * enc.embed_positions.num_embeddings), float(mel_value),
                     dtype=enc.conv1.weight.dtype, device=enc.conv1.weight.device)
    return enc(mel).last_hidden_state[0].float().cpu().clone()


@dataclass(eq=False)
class WhisperEncoderState:
    """One session's encoder state. Sizes are fixed at creation and do not grow with the stream."""

    conv: ConvTail
    layers: list[LayerCache]
    history: torch.Tensor  # (max_window_frames, d_model) conv outputs of the window (for trim)
    n_conv: int = 0  # conv output frames in the window (= layer-0 inputs)
    trimmed_frames: int = 0  # frames dropped from the window's start so far (stream frame = this + window)
    finished: bool = False
    extra: dict = field(default_factory=dict)


class CachedWhisperEncoder:
    """Whisper encoder running chunk by chunk on cached activations. Thread-compatible, not thread-safe
    per state: one session's state must not be stepped concurrently."""

    frame_ms = 20.0

    def __init__(
        self,
        encoder: nn.Module,
        pattern: AttentionPattern,
        *,
        substep_frames: int | None = None,
        auto_trim_keep_frames: int | None = None,
    ):
        self.encoder = encoder.eval()
        self.pattern = pattern
        self.blocks = [WhisperBlock(layer) for layer in encoder.layers]
        self.d_model = int(encoder.conv2.out_channels)
        self.n_mels = int(encoder.conv1.in_channels)
        self.max_window_frames = int(encoder.embed_positions.num_embeddings)
        chunk = getattr(pattern, "chunk_frames", 0)
        self.substep = substep_frames or max(chunk, 32)
        self.slots = min(self.max_window_frames, pattern.cache_frames(self.substep))
        if auto_trim_keep_frames is not None and not 0 <= auto_trim_keep_frames < self.max_window_frames:
            raise ConfigError(
                f"auto_trim_keep_frames={auto_trim_keep_frames} must be in [0, {self.max_window_frames})"
            )
        self.auto_trim_keep_frames = auto_trim_keep_frames
        self._resident = ResidentBatch()

    def describe(self) -> dict:
        return {"pattern": repr(self.pattern), "cache_slots": self.slots, "substep_frames": self.substep}

    state_type = WhisperEncoderState

    def create_state(self) -> WhisperEncoderState:
        return self.state_type(
            conv=new_conv_tail(self.n_mels, self.d_model),
            layers=[self._new_layer_cache(b) for b in self.blocks],
            history=torch.zeros(self.max_window_frames, self.d_model),
        )

    def _new_layer_cache(self, block: WhisperBlock) -> LayerCache:
        return new_layer_cache(block, self.slots, self.d_model)

    def window_frames(self, state: WhisperEncoderState) -> int:
        return state.layers[-1].n_out[0]

    def pending_frames(self, state: WhisperEncoderState) -> int:
        """Frames that hold window positions but are not out yet (an open block, the look-ahead).
        A step fits when ``window_frames + pending_frames + new frames <= max_window_frames``."""
        return state.n_conv - self.window_frames(state)

    @torch.inference_mode()
    def step(self, mel: torch.Tensor, state: WhisperEncoderState, *, final: bool = False) -> EncoderOutput:
        """Feed the session's NEW mel frames (n_mels, T). ``final=True`` on the last step flushes the
        frames that need the end-of-stream padding (block remainder, look-ahead, conv edge)."""
        return self.step_batch([mel], [state], final=[final])[0]

    @torch.inference_mode()
    def step_batch(
        self,
        mels: Sequence[torch.Tensor],
        states: Sequence[WhisperEncoderState],
        *,
        final: Sequence[bool] | None = None,
    ) -> list[EncoderOutput]:
        """One batched forward for many sessions, each at its own position with its own new frames."""
        if not states:
            return []
        final = list(final) if final is not None else [False] * len(states)
        starts, news, trimmed = [], [], []
        for mel, state in zip(mels, states):
            if state.finished:
                raise InputError("encoder step after the final step: the stream is finished")
            if mel.shape[0] != self.n_mels:
                raise InputError(f"mel has {mel.shape[0]} bins, the encoder expects {self.n_mels}")
        convs = conv_front_steps(self.encoder, [s.conv for s in states], mels, final)
        for x, state, fin in zip(convs, states, final):
            trimmed.append(self._make_room(state, x.shape[0]))
            starts.append(self._output_start(state))
            news.append(self._embed(state, x))
            state.finished = fin
        outs = self._run(states, news, final)
        result = []
        for b, out in enumerate(outs):
            if trimmed[b] is not None:  # the trimmed window up to where this step's frames begin
                result.append(EncoderOutput(frames=torch.cat([trimmed[b].frames[: starts[b]], out]), start=0))
            else:
                result.append(EncoderOutput(frames=out, start=starts[b]))
        return result

    def _output_start(self, state: WhisperEncoderState) -> int:
        """Window index where the next step's output begins (cached modes: the window's end)."""
        return self.window_frames(state)

    def _embed(self, state: WhisperEncoderState, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        state.history[state.n_conv : state.n_conv + n] = x
        pos = self.encoder.embed_positions.weight[state.n_conv : state.n_conv + n]
        state.n_conv += n
        return x + pos

    def _make_room(self, state: WhisperEncoderState, n_new: int) -> EncoderOutput | None:
        if state.n_conv + n_new <= self.max_window_frames:
            return None
        if self.auto_trim_keep_frames is None:
            raise LimitExceeded(
                "max_window_frames",
                self.max_window_frames,
                state.n_conv + n_new,
                "frames",
                what="Whisper encoder window (absolute positions end at 30 s; call trim() first)",
                fatal=False,
            )
        keep = min(self.auto_trim_keep_frames, self.max_window_frames - n_new - (state.n_conv - self.window_frames(state)))
        return self.trim(state, max(0, keep))

    def _run(self, states, news, final) -> list[torch.Tensor]:
        sessions = [s.layers for s in states]
        per_layer = self._resident.stack(sessions)
        outs = run_layers(self.blocks, per_layer, self.pattern, news, final, self.substep)
        self._resident.unstack(per_layer, sessions)
        norm = self.encoder.layer_norm
        return [norm(o) if o.shape[0] else o for o in outs]

    def trim(self, state: WhisperEncoderState, keep_last_frames: int) -> EncoderOutput:
        """Drop the window's start, keeping its last ``keep_last_frames`` frames, and re-base positions.

        The kept conv outputs (and any not yet emitted) are re-encoded at positions 0.. with empty caches:
        O(kept frames). Returns the new window from 0; with block-causal attention blocks are re-aligned
        to the new start, so up to a block of the kept frames may wait for more input again.
        """
        return self.trim_batch([state], [keep_last_frames])[0]

    @torch.inference_mode()
    def trim_batch(self, states: Sequence[WhisperEncoderState], keep_last_frames: Sequence[int]) -> list[EncoderOutput]:
        """``trim`` for many sessions: their kept frames are re-encoded in one batched pass."""
        check_trims(self, states, keep_last_frames)
        xs = [self._drop_front(state, keep) for state, keep in zip(states, keep_last_frames)]
        return [EncoderOutput(frames=f, start=0) for f in self._reencode_kept(states, xs)]

    def _drop_front(self, state: WhisperEncoderState, keep_last_frames: int) -> torch.Tensor:
        """Move the kept frames to the window's start, empty the caches; the kept frames, embedded."""
        drop = self.window_frames(state) - keep_last_frames
        kept = state.history[drop : state.n_conv].clone()
        state.history[: kept.shape[0]] = kept
        state.n_conv = 0
        state.trimmed_frames += drop
        for block, cache in zip(self.blocks, state.layers):
            reset_layer_cache(cache, block, self.d_model)
        return self._embed(state, kept)

    def _reencode_kept(self, states: Sequence[WhisperEncoderState], xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """A trim's re-encode of the kept frames (embedded) at positions 0.. into emptied caches."""
        return self._run(states, xs, [s.finished for s in states])
