"""Cache-aware Conformer (Stateful Conformer / NeMo FastConformer style): streaming == full pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamrt.encoders.base import StreamingEncoder
from streamrt.encoders.conformer import CacheAwareConformer, ConformerConfig
from streamrt.errors import ConfigError, LimitExceeded
from tests.streamrt.encoders.random_chunks import batch_step, random_spans

TOL = 2e-5
SMALL = dict(d_model=32, n_heads=4, n_layers=2, conv_kernel=5, substep_frames=8)


def _model(**kw) -> CacheAwareConformer:
    torch.manual_seed(0)
    return CacheAwareConformer(ConformerConfig(**{**SMALL, **kw})).eval()


@pytest.mark.parametrize(
    "settings",
    [
        dict(chunk_frames=4, left_frames=6),
        dict(chunk_frames=1, left_frames=0),
        dict(chunk_frames=None, left_frames=5, lookahead_frames=2),
        dict(chunk_frames=None, left_frames=7, lookahead_frames=0, subsampling=2),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_streaming_with_cached_conv_tails_equals_full_pass(settings, seed):
    model = _model(**settings)
    assert isinstance(model, StreamingEncoder)
    rng = np.random.default_rng(seed)
    mel = torch.randn(80, int(rng.integers(100, 260)))
    ref = model.forward_full(mel)
    state, outs = model.create_state(), []
    for a, b, final in random_spans(rng, mel.shape[1], 49):
        out = model.step(mel[:, a:b], state, final=final)
        assert out.start == sum(o.shape[0] for o in outs)
        outs.append(out.frames)
    got = torch.cat(outs)
    assert got.shape == ref.shape
    err = (got - ref).abs().amax(dim=1)
    assert float(err.max()) < TOL, f"frame {int(err.argmax())}: {float(err.max()):.2e}"


def test_batch_of_sessions_and_bounded_state():
    model = _model(chunk_frames=3, left_frames=6, max_window_frames=64)
    rng = np.random.default_rng(3)
    mels = [torch.randn(80, n) for n in (480, 250, 330)]
    refs = [model.forward_full(m) for m in mels]
    states = [model.create_state() for _ in mels]
    pos, got = [0, 0, 0], [[], [], []]
    shapes = [(c.k.shape, c.extra[0].shape) for c in states[0].layers]
    steps = 0
    while any(p < m.shape[1] for p, m in zip(pos, mels)):
        live, chunks, fin = batch_step(rng, mels, pos, 60)
        for b, out in zip(live, model.step_batch(chunks, [states[b] for b in live], final=fin)):
            got[b].append(out.frames)
            if model.window_frames(states[b]) > 30:
                model.trim(states[b], 8)  # long stream: the window keeps committed frames out
        steps += 1
        assert [(c.k.shape, c.extra[0].shape) for c in states[0].layers] == shapes
    for b in range(3):
        full = torch.cat(got[b])
        assert full.shape == refs[b].shape
        assert (full - refs[b]).abs().amax(dim=1).max() < TOL
    assert states[0].trimmed_frames > 60 and steps > 10


def test_window_limit_and_settings_errors():
    model = _model(max_window_frames=16)
    state = model.create_state()
    with pytest.raises(LimitExceeded, match="max_window_frames"):
        model.step(torch.randn(80, 200), state)
    with pytest.raises(ConfigError, match="divisible"):
        CacheAwareConformer(ConformerConfig(d_model=30, n_heads=4))
    with pytest.raises(ConfigError):
        CacheAwareConformer(ConformerConfig(left_frames=None))


def test_weights_are_trainable_with_the_full_pass_and_stream_after_training():
    model = _model(chunk_frames=4, left_frames=4).train()
    mel = torch.randn(80, 64)
    loss = model(mel).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    model.eval()
    state = model.create_state()
    got = torch.cat([model.step(mel[:, :30], state).frames, model.step(mel[:, 30:], state, final=True).frames])
    with torch.no_grad():
        assert (got - model(mel)).abs().max() < TOL
