"""Incremental Whisper decoding: preallocated caches, greedy or beam-search decode with
alignment-head attention, token/word timestamps and repetition guards."""

from streamrt.decoding.batch_greedy import greedy_batch
from streamrt.decoding.beam_search import BeamSettings, beam_batch
from streamrt.decoding.alignment import dtw_frames, monotonic_argmax, token_times, word_spans
from streamrt.decoding.kv_cache import DecoderCache
from streamrt.decoding.repetition import RepetitionGuard, compression_ratio
from streamrt.decoding.requests import DecodeRequest, DecodeResult
from streamrt.decoding.whisper_decoder import IncrementalWhisperDecoder

__all__ = [
    "BeamSettings",
    "DecodeRequest",
    "DecodeResult",
    "DecoderCache",
    "IncrementalWhisperDecoder",
    "RepetitionGuard",
    "beam_batch",
    "compression_ratio",
    "dtw_frames",
    "greedy_batch",
    "monotonic_argmax",
    "token_times",
    "word_spans",
]
