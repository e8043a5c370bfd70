"""The offline reference's front end (no weights): the same log-mel and the same 30 s windows as
faster-whisper, which the token-identity tests rely on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamrt.models.whisper.offline import WINDOW_FRAMES, _windows, log_mel_recording


def _noise_tone(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_faster_whisper(n_mels):
    fe = pytest.importorskip("faster_whisper.feature_extractor")
    audio = _noise_tone(3.3)
    ref = fe.FeatureExtractor(feature_size=n_mels)(audio)
    ours = log_mel_recording(audio, n_mels).numpy()
    assert ours.shape == ref.shape == (n_mels, (audio.size + 160) // 160)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_clamp_floor_is_shared_by_the_whole_recording():
    loud_then_silent = np.concatenate([_noise_tone(1.0), np.zeros(16000 * 40, np.float32)])
    mel = log_mel_recording(loud_then_silent)
    assert mel[:, -500:].min() == pytest.approx(mel.max() - 2.0)  # (max - 8) / 4 after normalizing


@pytest.mark.parametrize(
    ("seconds", "windows", "last_content"),
    [(0.5, 1, 50), (29.99, 1, 2999), (30.0, 1, 3000), (44.37, 2, 1437), (60.0, 2, 3000), (60.01, 3, 1)],
)
def test_windows_are_back_to_back_and_zero_padded(seconds, windows, last_content):
    mel = log_mel_recording(_noise_tone(seconds))
    parts = _windows(mel)
    assert len(parts) == windows and all(p.shape == (80, WINDOW_FRAMES) for p in parts)
    assert torch.equal(torch.cat(parts, 1)[:, : mel.shape[1] - 1], mel[:, :-1])  # the last frame is dropped
    assert torch.count_nonzero(parts[-1][:, last_content:]) == 0  # zero features, not silence
    assert torch.count_nonzero(parts[-1][:, last_content - 1]) > 0
