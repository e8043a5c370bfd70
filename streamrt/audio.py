"""Audio at the edge: decode PCM bytes, downmix, resample to the model's rate (soxr), read files.

Everything past this module sees mono float32 at the model's sample rate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamrt.errors import AudioFormatError, DataError, LimitExceeded

ENCODINGS = {"pcm_s16le": (np.dtype("<i2"), 2), "pcm_f32le": (np.dtype("<f4"), 4)}
MIN_SAMPLE_RATE_HZ = 8000
MAX_SAMPLE_RATE_HZ = 192000
MAX_CHANNELS = 8


def check_format(encoding: str, sample_rate: int, channels: int) -> None:
    """Raise AudioFormatError naming the problem and the supported range."""
    if encoding not in ENCODINGS:
        raise AudioFormatError(
            f"unsupported encoding {encoding!r}; supported: {', '.join(ENCODINGS)}",
            code="unsupported_encoding",
            fatal=True,
        )
    if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or not (
        MIN_SAMPLE_RATE_HZ <= sample_rate <= MAX_SAMPLE_RATE_HZ
    ):
        raise AudioFormatError(
            f"unsupported sample_rate {sample_rate!r}; supported: integer Hz from "
            f"{MIN_SAMPLE_RATE_HZ} to {MAX_SAMPLE_RATE_HZ}",
            code="unsupported_sample_rate",
            fatal=True,
        )
    if not isinstance(channels, int) or isinstance(channels, bool) or not (1 <= channels <= MAX_CHANNELS):
        raise AudioFormatError(
            f"unsupported channels {channels!r}; supported: 1 to {MAX_CHANNELS}",
            code="unsupported_channels",
            fatal=True,
        )


def decode_pcm(data: bytes, encoding: str, channels: int) -> np.ndarray:
    """Bytes -> (frames, channels) float32. Raises AudioFormatError on a partial frame."""
    dtype, width = ENCODINGS[encoding]
    frame_bytes = width * channels
    if len(data) % frame_bytes:
        raise AudioFormatError(
            f"{len(data)} bytes is not a whole number of frames: {encoding} x {channels} channel(s) "
            f"needs a multiple of {frame_bytes} bytes",
            code="partial_frame",
        )
    x = np.frombuffer(data, dtype=dtype).reshape(-1, channels)
    if encoding == "pcm_s16le":
        return x.astype(np.float32) / 32768.0
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise AudioFormatError("pcm_f32le audio contains NaN or infinity", code="bad_samples")
    return x


def downmix(x: np.ndarray) -> np.ndarray:
    if x.ndim == 1:
        return x
    return x[:, 0] if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float32)


class StreamResampler:
    """Streaming resampler (soxr keeps its filter state between chunks); identity when rates match."""

    def __init__(self, in_rate: int, out_rate: int):
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._rs = None
        if in_rate != out_rate:
            import soxr

            self._rs = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self._rs is None:
            return x
        return self._rs.resample_chunk(x, last=last)


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Read any soundfile-readable file as mono float32 at ``sample_rate``. DataError if unreadable."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), None, "audio file not found")
    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise DataError(str(path), None, f"cannot read audio: {e}") from None
    x = downmix(x)
    if sr != sample_rate:
        import soxr

        x = soxr.resample(x, sr, sample_rate, quality="HQ").astype(np.float32)
    return x


def decode_file(data: bytes, sample_rate: int, *, max_s: float | None = None) -> np.ndarray:
    """An audio file's bytes (any format soundfile reads: WAV, FLAC, OGG/Vorbis/Opus, MP3, ...) as mono
    float32 at ``sample_rate`` (soxr). ``AudioFormatError`` ``invalid_file_format`` if unreadable;
    ``LimitExceeded`` ``audio_too_long`` past ``max_s`` seconds (checked from the header, before decoding)."""
    import io
    import re

    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(data))
        if max_s is not None and info.samplerate > 0 and info.frames / info.samplerate > max_s:
            raise LimitExceeded("max_upload_s", max_s, info.frames / info.samplerate, "s",
                                what="audio duration", code="audio_too_long", fatal=True)
        x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except LimitExceeded:
        raise
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        formats = ", ".join(sorted(f.lower() for f in sf.available_formats()))
        why = re.sub(r"^Error opening <[^>]*>: ", "", str(e)).strip()  # not the in-memory file's repr
        raise AudioFormatError(f"cannot read the file as audio ({why}); formats read: {formats}",
                               code="invalid_file_format", fatal=True) from None
    if x.shape[0] == 0:
        raise AudioFormatError("the file holds no audio samples", code="invalid_file_format", fatal=True)
    if not np.all(np.isfinite(x)):
        raise AudioFormatError("the file's audio contains NaN or infinity", code="invalid_file_format", fatal=True)
    x = downmix(x)
    if sr != sample_rate:
        import soxr

        x = soxr.resample(x, sr, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)
