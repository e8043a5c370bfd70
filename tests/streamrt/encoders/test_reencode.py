"""The re-encode baseline (whisper_streaming): whole window each step == transformers' WhisperEncoder."""

from __future__ import annotations

import numpy as np
import torch

from streamrt.encoders.base import Full
from streamrt.encoders.reference import whisper_full_pass
from streamrt.encoders.factory import make_encoder

TOL = 2e-5


def test_each_step_is_the_full_pass_over_the_window(whisper_encoder):
    enc = make_encoder(whisper_encoder, "reencode")
    rng = np.random.default_rng(0)
    mel = torch.randn(80, 233)
    state, i = enc.create_state(), 0
    while i < mel.shape[1]:
        k = int(rng.integers(1, 60))
        fin = i + k >= mel.shape[1]
        out = enc.step(mel[:, i : i + k], state, final=fin)
        i = min(i + k, mel.shape[1])
        assert out.start == 0
        # the window holds the conv frames the mel so far completes (the last waits for one more frame)
        n = out.frames.shape[0]
        assert n == ((i + 1) // 2 if fin else (i - 1) // 2)
    assert (out.frames - whisper_full_pass(whisper_encoder, mel, Full())).abs().max() < TOL


def test_full_window_equals_transformers_encoder_forward(whisper_encoder):
    mel = torch.randn(1, 80, 400)  # the small encoder's 200 positions = 400 mel frames
    with torch.inference_mode():
        ref = whisper_encoder(mel).last_hidden_state[0]
    enc = make_encoder(whisper_encoder, "reencode")
    state = enc.create_state()
    enc.step(mel[0, :, :123], state)
    out = enc.step(mel[0, :, 123:], state, final=True)
    assert out.frames.shape == ref.shape == (200, 64)
    assert (out.frames - ref).abs().amax(dim=1).max() < TOL


def test_batch_with_different_window_lengths_and_trim(whisper_encoder):
    enc = make_encoder(whisper_encoder, "reencode")
    mels = [torch.randn(80, n) for n in (90, 151, 20)]
    states = [enc.create_state() for _ in mels]
    outs = enc.step_batch(mels, states, final=[True, True, True])
    for mel, out in zip(mels, outs):
        ref = whisper_full_pass(whisper_encoder, mel, Full())
        assert out.start == 0 and (out.frames - ref).abs().max() < TOL
    trimmed = enc.trim(states[1], 30)
    assert trimmed.start == 0 and trimmed.frames.shape[0] == 30
    assert states[1].trimmed_frames == 76 - 30


def test_padded_to_window_is_whispers_30s_computation(whisper_encoder):
    # faster-whisper / whisper_streaming: the window's mel, zero features after it, 3000 frames
    enc = make_encoder(whisper_encoder, "reencode", pad_to_window=True)
    mel = torch.randn(80, 150)
    state = enc.create_state()
    enc.step(mel[:, :70], state)
    assert enc.window_frames(state) == 34
    out = enc.step(mel[:, 70:], state, final=True)
    padded = torch.nn.functional.pad(mel, (0, 400 - 150))
    with torch.inference_mode():
        ref = whisper_encoder(padded[None]).last_hidden_state[0]
    assert out.start == 0 and out.frames.shape == (200, 64) and enc.window_frames(state) == 75
    assert (out.frames - ref).abs().amax(dim=1).max() < TOL
    trimmed = enc.trim(state, 25)
    with torch.inference_mode():
        ref = whisper_encoder(torch.nn.functional.pad(mel[:, 100:], (0, 350))[None]).last_hidden_state[0]
    assert enc.window_frames(state) == 25 and (trimmed.frames - ref).abs().max() < TOL


def test_silence_tail_is_the_encoding_of_zero_features(whisper_encoder):
    from streamrt.encoders import silence_tail

    padded = make_encoder(whisper_encoder, "reencode", pad_to_window=True)
    tail = silence_tail(whisper_encoder)
    assert tail.shape == (200, 64)
    state = padded.create_state()
    out = padded.step(torch.zeros(80, 0), state, final=True)  # an empty window padded to 30 s
    assert (out.frames - tail).abs().max() < TOL
    # the task pads with Whisper's feature floor instead of zeros: a different, constant encoding
    floor = silence_tail(whisper_encoder, -0.8)
    assert floor.shape == tail.shape and (floor - tail).abs().max() > TOL
