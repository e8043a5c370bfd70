"""Stand-ins for unit tests of the Whisper streaming task without packaged weights: a tiny random
Whisper, a re-encoding encoder over it, deterministic features and a toy tokenizer."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from streamrt.tasks.whisper_stream import WhisperStreamingModel, WhisperStreamSettings
from tests.streamrt.random_whisper import random_whisper

N_MELS = 8
EOT, SOT, NO_TS = 80, 81, 90


class ToyTokenizer:
    def token_text(self, i: int) -> str:
        return f"w{i}" if i % 4 == 0 else f" w{i}"

    def decode(self, ids, skip_special=True):
        return "".join(self.token_text(i) for i in ids if not (skip_special and i >= EOT)).strip()

    def encode(self, text):
        return [int(w[1:]) for w in text.split()]


class ToyFeatures:
    """10 ms frames: a fixed random projection of each 160-sample hop (deterministic, streaming)."""

    proj = np.random.default_rng(0).standard_normal((160, N_MELS)).astype(np.float32) / 10

    def __init__(self):
        self.buf = np.zeros(0, np.float32)

    def accept(self, x):
        self.buf = np.concatenate([self.buf, x])
        n = len(self.buf) // 160
        frames, self.buf = self.buf[: n * 160].reshape(n, 160), self.buf[n * 160 :]
        return torch.from_numpy(frames @ self.proj).T.contiguous()

    def flush(self):
        if not len(self.buf):
            return torch.zeros(N_MELS, 0)
        x = np.pad(self.buf, (0, 160 - len(self.buf)))
        self.buf = np.zeros(0, np.float32)
        return torch.from_numpy(x[None] @ self.proj).T.contiguous()


class ReencodeStandIn:
    """Re-encodes the whole window each step (start=0), like the real 're-encode' mode."""

    frame_ms = 20.0

    def __init__(self, model):
        self.model = model
        self.d_model = model.config.d_model
        self.max_window_frames = model.config.max_source_positions
        self.calls: list[int] = []

    def create_state(self):
        return SimpleNamespace(mel=torch.zeros(N_MELS, 0))

    def _encode(self, state):
        mel = state.mel[:, : 2 * self.max_window_frames]
        if mel.shape[-1] == 0:
            return torch.zeros(0, self.d_model)
        enc = self.model.model.encoder
        x = torch.nn.functional.gelu(enc.conv1(mel[None]))
        x = torch.nn.functional.gelu(enc.conv2(x)).transpose(1, 2)
        x = x + enc.embed_positions.weight[: x.shape[1]]
        for layer in enc.layers:
            x = layer(x, attention_mask=None)
            x = x[0] if isinstance(x, tuple) else x
        return enc.layer_norm(x)[0]

    def step(self, mel, state, *, final=False):
        return self.step_batch([mel], [state], final=[final])[0]

    def step_batch(self, mels, states, *, final=None):
        self.calls.append(len(mels))
        outs = []
        for mel, st in zip(mels, states):
            st.mel = torch.cat([st.mel, mel], dim=-1)
            outs.append(SimpleNamespace(frames=self._encode(st), start=0))
        return outs

    def window_frames(self, state):
        return (state.mel.shape[-1] + 1) // 2

    def trim(self, state, keep_last_frames):
        state.mel = state.mel[:, state.mel.shape[-1] - 2 * keep_last_frames :] if keep_last_frames else state.mel[:, :0]
        return SimpleNamespace(frames=self._encode(state), start=0)

    def trim_batch(self, states, keep_last_frames):
        return [self.trim(s, k) for s, k in zip(states, keep_last_frames)]


@pytest.fixture(scope="session")
def tiny_model():
    model = random_whisper(
        vocab_size=96, num_mel_bins=N_MELS, d_model=32, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=300, max_target_positions=120, pad_token_id=EOT, bos_token_id=SOT,
        eos_token_id=EOT, decoder_start_token_id=SOT,
    )
    with torch.no_grad():  # make eot unlikely so hypotheses are non-empty
        model.proj_out.weight[EOT] *= 0.0
    return model


@pytest.fixture
def make_streaming(tiny_model):
    def make(**settings):
        bundle = SimpleNamespace(
            model=tiny_model, tokenizer=ToyTokenizer(), name="toy", multilingual=False, n_mels=N_MELS,
            sot=SOT, eot=EOT, no_timestamps=NO_TS, transcribe=83, translate=84, no_speech=85,
            timestamp_begin=91, language_ids={}, suppress_tokens=(), alignment_heads=((1, 0), (1, 1)),
            sot_sequence=lambda task="transcribe", language=None: [SOT],
        )
        enc = ReencodeStandIn(tiny_model)
        s = WhisperStreamSettings(**{"chunk_ms": 500, "max_window_s": 5.8, "forced_keep_s": 2.0,
                                     "trim_after_s": 3.0, **settings})
        return WhisperStreamingModel(bundle, enc, ToyFeatures, s, encoder_mode="stand-in")

    return make
