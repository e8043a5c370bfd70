"""``make_encoder``: a streaming encoder of the chosen mode over a Whisper model's encoder weights.

Its own module, above the encoders it builds (``whisper``, ``lookahead``, ``reencode``), so that
none of them imports another to reach it.
"""

from __future__ import annotations

from torch import nn

from streamrt.encoders.base import AttentionPattern, BlockCausal, Sliding
from streamrt.encoders.lookahead import BlockLookahead, LookaheadWhisperEncoder
from streamrt.encoders.reencode import ReencodeWhisperEncoder
from streamrt.encoders.whisper import CachedWhisperEncoder, whisper_encoder_module
from streamrt.errors import ConfigError

#: the modes ``make_encoder`` builds on a Whisper model
ENCODER_MODES = ("reencode", "block-causal", "block-lookahead", "sliding")


def make_encoder(
    whisper_model: nn.Module,
    mode: str,
    *,
    chunk_frames: int = 50,
    left_frames: int | None = 500,
    lookahead_frames: int | None = None,
    substep_frames: int | None = None,
    auto_trim_keep_frames: int | None = None,
    pad_to_window: bool = False,
):
    """A streaming encoder over a Whisper model's encoder weights.

    mode: "block-causal" (``chunk_frames`` encoder frames per block = 20 ms each, ``left_frames`` of left
    context, None = the whole window), "sliding" (``left_frames`` back, ``lookahead_frames`` ahead per
    layer), "block-lookahead" (a frame is cached once ``lookahead_frames`` more exist, default 50 = 1 s,
    at most ``chunk_frames`` per group; the frames after the cached ones are re-encoded every step:
    streamrt.encoders.lookahead), "reencode" (the whole window every step, full attention;
    whisper_streaming's baseline; ``pad_to_window=True`` pads it to 30 s with zero features as
    faster-whisper does).
    ``auto_trim_keep_frames``: when the 30 s window would overflow, trim to this many frames instead of
    raising ``LimitExceeded``.
    """
    encoder = whisper_encoder_module(whisper_model)
    if mode == "block-causal":
        if chunk_frames < 1:
            raise ConfigError(f"chunk_frames must be >= 1 (got {chunk_frames})")
        pattern: AttentionPattern = BlockCausal(chunk_frames, left_frames)
    elif mode == "sliding":
        lookahead = lookahead_frames or 0
        if lookahead < 0:
            raise ConfigError(f"lookahead_frames must be >= 0 (got {lookahead})")
        pattern = Sliding(left_frames, lookahead)
    elif mode == "block-lookahead":
        lookahead = 50 if lookahead_frames is None else lookahead_frames
        if chunk_frames < 1 or lookahead < 0 or (left_frames is not None and left_frames < 0):
            raise ConfigError(
                f"block-lookahead needs chunk_frames >= 1, lookahead_frames >= 0, left_frames >= 0 or None "
                f"(got {chunk_frames}, {lookahead}, {left_frames})"
            )
        return LookaheadWhisperEncoder(
            encoder, BlockLookahead(chunk_frames, left_frames, lookahead), auto_trim_keep_frames=auto_trim_keep_frames
        )
    elif mode == "reencode":
        return ReencodeWhisperEncoder(
            encoder, auto_trim_keep_frames=auto_trim_keep_frames, pad_to_window=pad_to_window
        )
    else:
        raise ConfigError(f"unknown encoder mode {mode!r}; known: {', '.join(ENCODER_MODES)}")
    if left_frames is not None and left_frames < 0:
        raise ConfigError(f"left_frames must be >= 0 or None (got {left_frames})")
    return CachedWhisperEncoder(
        encoder, pattern, substep_frames=substep_frames, auto_trim_keep_frames=auto_trim_keep_frames
    )
