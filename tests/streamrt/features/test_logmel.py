"""Incremental log-mel == offline log-mel on the same samples (issue 3, "Incremental features")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamrt.errors import ConfigError, InputError
from streamrt.features.logmel import HOP, LogMelStream, log_mel_offline

TOL = 1e-5


def _stream(x: np.ndarray, rng: np.random.Generator, max_chunk: int, **kw) -> torch.Tensor:
    s = LogMelStream(**kw)
    parts, i = [], 0
    while i < len(x):
        k = int(rng.integers(1, max_chunk + 1))
        parts.append(s.accept(x[i : i + k]))
        i += k
    parts.append(s.flush())
    return torch.cat(parts, dim=1)


def _speechlike(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / 16000
    env = 0.05 + 0.5 * (np.sin(2 * np.pi * 1.3 * t) > 0.3)
    x = env * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(n)
    return x.astype(np.float32)


@pytest.mark.parametrize("seed", range(12))
def test_random_chunkings_give_the_offline_frames(seed):
    rng = np.random.default_rng(seed)
    max_chunk = int(rng.choice([1, 7, 160, 401, 3000, 20000]))
    n = int(rng.integers(0, 40000 if max_chunk >= 160 else 3000))
    x = _speechlike(n, rng)
    got = _stream(x, rng, max_chunk)
    ref = log_mel_offline(x)
    assert got.shape == ref.shape == (80, n // HOP)
    if n // HOP:
        per_frame = (got - ref).abs().amax(dim=0)
        assert per_frame.max() < TOL, f"worst frame {int(per_frame.argmax())}: {float(per_frame.max())}"


@pytest.mark.parametrize("n", [0, 1, 159, 160, 200, 201, 202, 360, 361, 400, 401, 560])
def test_stream_start_and_flush_edges(n):
    x = _speechlike(n, np.random.default_rng(n))
    rng = np.random.default_rng(1)
    for max_chunk in (1, 13, 1000):
        got = _stream(x, rng, max_chunk)
        ref = log_mel_offline(x)
        assert got.shape == ref.shape
        assert torch.allclose(got, ref, atol=TOL)


def test_frames_come_out_as_soon_as_their_samples_are_in():
    s = LogMelStream()
    assert s.accept(np.zeros(200, np.float32)).shape[1] == 0  # left reflection needs 201 samples
    assert s.accept(np.zeros(1, np.float32)).shape[1] == 1  # frame 0 spans samples -200..199
    assert s.accept(np.zeros(159, np.float32)).shape[1] == 1  # frame 1 ends at sample 359
    assert s.flush().shape[1] == 0  # 360 samples -> 2 frames, all out already


def test_running_max_floor_is_causal_and_memory_is_bounded():
    rng = np.random.default_rng(3)
    x = _speechlike(16000 * 4, rng)
    x[:16000] *= 1e-4  # a quiet first second
    x[40000:40200] += 0.9  # the loudest moment comes late
    s = LogMelStream()
    early = s.accept(x[:16000])
    for i in range(16000, len(x), 800):
        s.accept(x[i : i + 800])
        assert len(s._buf) < 400 + 800  # kept samples do not grow with the stream
    ref_prefix = log_mel_offline(x[:16000])
    assert torch.allclose(early, ref_prefix[:, : early.shape[1]], atol=TOL)  # emitted before the end was known
    # a later peak never changes frames already emitted; the global-max rule would
    glob = log_mel_offline(x, floor="global-max")
    run = log_mel_offline(x, floor="running-max")
    assert not torch.allclose(glob[:, :100], run[:, :100])
    assert torch.allclose(glob[:, 260:], run[:, 260:], atol=TOL)


def test_running_max_equals_global_when_the_loudest_frame_comes_first():
    x = _speechlike(16000 * 2, np.random.default_rng(5))
    x[:800] = 0.99 * np.sign(np.sin(np.arange(800)))
    glob, run = log_mel_offline(x, floor="global-max"), log_mel_offline(x)
    loudest = int(glob.max(dim=0).values.argmax())
    assert loudest < 6
    assert torch.allclose(glob[:, loudest:], run[:, loudest:], atol=TOL)


def test_fixed_floor_streams_too():
    x = _speechlike(9000, np.random.default_rng(6))
    got = _stream(x, np.random.default_rng(7), 500, floor=-6.0)
    assert torch.allclose(got, log_mel_offline(x, floor=-6.0), atol=TOL)
    assert float(got.min()) >= (-6.0 + 4) / 4 - 1e-6


def test_offline_matches_transformers_whisper_feature_extractor_on_30s():
    from transformers import WhisperFeatureExtractor

    rng = np.random.default_rng(8)
    x = _speechlike(480000, rng)
    ref = WhisperFeatureExtractor()(x, sampling_rate=16000, return_tensors="np").input_features[0]
    ours = log_mel_offline(x, floor="global-max").numpy()
    assert ours.shape == ref.shape == (80, 3000)
    assert np.abs(ours - ref).max() < 1e-4
    # with the loudest moment at the start, the streaming rule gives the same numbers from it on
    x[:800] = 0.99
    ref = WhisperFeatureExtractor()(x, sampling_rate=16000, return_tensors="np").input_features[0]
    streamed = _stream(x, rng, 48000).numpy()
    loudest = int(np.argmax(ref.max(axis=0)))
    assert loudest < 6
    assert np.abs(streamed[:, loudest:] - ref[:, loudest:]).max() < 1e-4


def test_128_mel_bins_and_errors():
    x = _speechlike(5000, np.random.default_rng(9))
    assert _stream(x, np.random.default_rng(1), 999, n_mels=128).shape == (128, 31)
    with pytest.raises(ConfigError, match="global-max"):
        LogMelStream(floor="global-max")
    s = LogMelStream()
    s.flush()
    with pytest.raises(InputError):
        s.accept(x)
    with pytest.raises(InputError, match="mono"):
        LogMelStream().accept(np.zeros((2, 100), np.float32))
