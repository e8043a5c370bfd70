"""Whisper log-mel features, offline and incremental, giving the same frames on the same samples.

Whisper's front end (and transformers' ``WhisperFeatureExtractor``): 16 kHz audio, a 400-sample Hann
window every 160 samples (10 ms), ``torch.stft(center=True)`` with reflect padding of 200 samples at
both ends, power spectrum, Slaney mel filterbank (0-8 kHz), ``log10(max(mel, 1e-10))``, the last STFT
frame dropped (so N samples give ``N // 160`` frames; frame ``i`` is centred on sample ``160 * i``),
then a dynamic-range floor and ``(x + 4) / 4``.

The floor is the one non-causal step: Whisper clamps every value to ``max(all values) - 8``, and the
global maximum is only known at the end. Both extractors here take a ``floor`` rule:

- ``"running-max"`` (default, streaming-consistent): frame ``i`` is clamped to
  ``max(values of frames 0..i) - 8``. It equals Whisper's rule on every frame at or after the loudest
  frame, and on earlier frames whenever they have no value below the final floor.
- a float ``F``: a fixed floor, values clamped to ``F`` (in log10 units, before ``(x + 4) / 4``).
- ``"global-max"``: Whisper's own rule; offline only (``LogMelStream`` refuses it).

Stream start and end: the left reflect padding needs the first 201 samples, so the first frame comes
out once 201 samples are in. The right reflect padding needs the last samples, so the last
``ceil(240 / 160)`` frames come out of ``flush()``. A stream shorter than 201 samples is padded with
zeros instead of reflected, in both extractors (``torch.stft`` cannot reflect-pad it at all).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from streamrt.errors import ConfigError, InputError

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
PAD = N_FFT // 2
DYNAMIC_RANGE = 8.0  # log10 units kept below the (running or global) maximum
LOG_EPS = 1e-10
FloorRule = str | float

__all__ = ["LogMelStream", "log_mel_offline", "mel_filters", "SAMPLE_RATE", "HOP", "N_FFT"]


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = 80) -> torch.Tensor:
    """(n_mels, 201) Slaney mel filterbank, computed locally by transformers' ``mel_filter_bank``."""
    from transformers.audio_utils import mel_filter_bank

    fb = mel_filter_bank(
        num_frequency_bins=1 + N_FFT // 2,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(np.ascontiguousarray(fb.T, dtype=np.float32))


@lru_cache(maxsize=1)
def _window() -> torch.Tensor:
    return torch.hann_window(N_FFT)


def _check_floor(floor: FloorRule, *, streaming: bool) -> None:
    if isinstance(floor, (int, float)) and not isinstance(floor, bool):
        return
    allowed = ("running-max",) if streaming else ("running-max", "global-max")
    if floor not in allowed:
        raise ConfigError(
            f"log-mel floor {floor!r} is not one of {allowed} or a number (log10 units)"
            + ("; 'global-max' needs the whole signal and cannot stream" if floor == "global-max" else "")
        )


def _log_power_mel(padded: torch.Tensor, n_frames: int, n_mels: int) -> torch.Tensor:
    """log10 mel power of the first ``n_frames`` frames of an already padded signal: (n_mels, n_frames)."""
    if n_frames <= 0:
        return torch.zeros(n_mels, 0)
    seg = padded[: (n_frames - 1) * HOP + N_FFT]
    spec = torch.stft(seg, N_FFT, HOP, window=_window(), center=False, return_complex=True)
    power = (spec[:, :n_frames].abs() ** 2).contiguous()
    return torch.clamp(mel_filters(n_mels) @ power, min=LOG_EPS).log10()


def _apply_floor(log_spec: torch.Tensor, floor: FloorRule, running_max: float) -> tuple[torch.Tensor, float]:
    """Clamp and rescale; returns the features and the new running maximum."""
    if log_spec.shape[1] == 0:
        return log_spec, running_max
    if floor == "global-max":
        lo = log_spec.max() - DYNAMIC_RANGE
    elif floor == "running-max":
        frame_max = torch.cummax(log_spec.max(dim=0).values, dim=0).values
        frame_max = torch.clamp(frame_max, min=running_max)
        running_max = float(frame_max[-1])
        lo = (frame_max - DYNAMIC_RANGE).unsqueeze(0)
    else:
        lo = torch.tensor(float(floor))
    return (torch.maximum(log_spec, lo) + 4.0) / 4.0, running_max


def _as_float_samples(samples: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(samples, dtype=np.float32))
    if x.dim() != 1:
        raise InputError(f"log-mel needs mono 1-D samples, got shape {tuple(x.shape)}")
    return x


def log_mel_offline(
    samples: np.ndarray | torch.Tensor, n_mels: int = 80, *, floor: FloorRule = "running-max"
) -> torch.Tensor:
    """(n_mels, N // 160) log-mel of a whole 16 kHz signal, the reference ``LogMelStream`` matches.

    With ``floor="global-max"`` and 480000 samples it gives WhisperFeatureExtractor's features.
    """
    _check_floor(floor, streaming=False)
    x = _as_float_samples(samples)
    n_frames = len(x) // HOP
    mode = "reflect" if len(x) > PAD else "constant"
    padded = torch.nn.functional.pad(x[None, None], (PAD, PAD), mode=mode)[0, 0]
    log_spec = _log_power_mel(padded, n_frames, n_mels)
    return _apply_floor(log_spec, floor, -float("inf"))[0]


class LogMelStream:
    """Incremental log-mel: ``accept`` chunks of any size, get the frames they complete; ``flush`` at end.

    One instance per session. The concatenation of everything returned equals
    ``log_mel_offline(all_samples, n_mels, floor=floor)`` to float tolerance. Memory is bounded: it keeps
    fewer than ``N_FFT + chunk`` samples. Call ``flush()`` once after the last chunk; after that the stream
    is finished and ``accept`` raises ``InputError``.
    """

    def __init__(self, n_mels: int = 80, *, floor: FloorRule = "running-max"):
        _check_floor(floor, streaming=True)
        self.n_mels = n_mels
        self.floor = floor
        self._running_max = -float("inf")
        self._raw_head = torch.zeros(0)  # samples held until the left reflection can be built
        self._buf = torch.zeros(0)  # padded signal from padded index self._next_frame * HOP onward
        self._started = False
        self._finished = False
        self._next_frame = 0
        self.samples_seen = 0

    @property
    def frames_emitted(self) -> int:
        return self._next_frame

    @property
    def running_max(self) -> float:
        """Largest log10 mel value so far (-inf before the first frame); the floor is this minus 8."""
        return self._running_max

    def accept(self, samples_16k: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Feed mono 16 kHz float samples; returns the (n_mels, T_new) frames they complete."""
        if self._finished:
            raise InputError("LogMelStream.accept after flush(): the stream is finished")
        x = _as_float_samples(samples_16k)
        self.samples_seen += len(x)
        if not self._started:
            self._raw_head = torch.cat([self._raw_head, x])
            if len(self._raw_head) <= PAD:
                return torch.zeros(self.n_mels, 0)
            head = self._raw_head
            self._buf = torch.cat([head[1 : PAD + 1].flip(0), head])
            self._raw_head = torch.zeros(0)
            self._started = True
        else:
            self._buf = torch.cat([self._buf, x])
        n_ready = max(0, (len(self._buf) - N_FFT) // HOP + 1)
        return self._emit(n_ready)

    def flush(self) -> torch.Tensor:
        """End of stream: returns the remaining frames (those that need the right-edge padding)."""
        if self._finished:
            return torch.zeros(self.n_mels, 0)
        self._finished = True
        total = self.samples_seen // HOP
        if not self._started:
            padded = torch.nn.functional.pad(self._raw_head, (PAD, PAD))
            self._buf = padded
        else:
            tail = self._buf[-(PAD + 1) :]
            self._buf = torch.cat([self._buf, tail[:-1].flip(0)])
        return self._emit(total - self._next_frame)

    def _emit(self, n: int) -> torch.Tensor:
        log_spec = _log_power_mel(self._buf, n, self.n_mels)
        feats, self._running_max = _apply_floor(log_spec, self.floor, self._running_max)
        self._next_frame += n
        self._buf = self._buf[n * HOP :]
        return feats
