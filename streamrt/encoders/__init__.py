"""Streaming encoders that cache their activations (see docs/encoders.md).

``make_encoder(whisper_model, mode, **settings)`` with mode "block-causal", "block-lookahead",
"sliding" or "reencode";
``streamrt.encoders.conformer.CacheAwareConformer`` for a trainable cache-aware Conformer.
"""

from streamrt.encoders.base import BlockCausal, EncoderOutput, Full, Sliding, StreamingEncoder
from streamrt.encoders.factory import make_encoder
from streamrt.encoders.whisper import silence_tail

__all__ = ["BlockCausal", "EncoderOutput", "Full", "Sliding", "StreamingEncoder", "make_encoder", "silence_tail"]
