"""The silero VAD as a scheduler model: per-frame speech probabilities equal silero's own
``OnnxWrapper`` run frame by frame, whatever the pieces the audio arrives in and whether streams
are stepped alone or batched; speech scores high, silence low."""

from __future__ import annotations

import numpy as np
import pytest

from streamrt.models.vad import FRAME_SAMPLES, load_vad
from streamrt.types import AudioChunk
from tests.streamrt.dialogue.dialogue_helpers import silence, speech


def _reference(audio: np.ndarray) -> list[float]:
    torch = pytest.importorskip("torch")
    from silero_vad.utils_vad import OnnxWrapper

    from streamrt.models.vad.silero import silero_onnx_path

    ref = OnnxWrapper(str(silero_onnx_path()), force_onnx_cpu=True)
    n = len(audio) // FRAME_SAMPLES
    return [float(ref(torch.from_numpy(audio[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES]), 16000)[0, 0]) for i in range(n)]


def test_frame_scores_equal_silero_alone_and_batched_in_any_pieces():
    vad = load_vad("silero")
    a = np.concatenate([silence(0.3), speech("Please call Stella."), silence(0.5)])
    b = np.concatenate([speech("What is the capital of France?"), silence(0.2)])
    streams = [vad.create_stream() for _ in range(2)]
    got = [[], []]
    rng = np.random.default_rng(0)
    pos = [0, 0]
    while pos[0] < len(a) or pos[1] < len(b):
        for i, x in enumerate((a, b)):
            n = int(rng.integers(100, 3000))
            if pos[i] < len(x):
                streams[i].accept(AudioChunk(x[pos[i]:pos[i] + n], 16000, 1000 * pos[i] / 16000))
                pos[i] += n
        ready = [s for s in streams if s.is_ready()]
        if ready:
            vad.step(ready)
        for i, s in enumerate(streams):
            got[i] += s.pop_result().frame_scores
    for x, scores in zip((a, b), got):
        assert scores == pytest.approx(_reference(x), abs=1e-5)
    speech_frames = np.array(got[0][10:40])
    assert np.array(got[0][:5]).max() < 0.2 and speech_frames.max() > 0.9
