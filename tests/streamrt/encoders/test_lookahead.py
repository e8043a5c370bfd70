"""Block-lookahead (streamrt/encoders/lookahead.py): the streamed window equals the plain reference
(transformers' own layer forward, group by group, replaying the same step ends) after every step,
for random chunkings, alone and in a batch of sessions at different positions; frozen frames never
change; trims re-base the window."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamrt.encoders.lookahead import plan_groups
from streamrt.encoders.reference import lookahead_pass
from streamrt.encoders.factory import make_encoder
from streamrt.errors import ConfigError
from tests.streamrt.encoders.random_chunks import batch_step, random_spans

TOL = 2e-5
SETTINGS = [
    dict(chunk_frames=5, left_frames=12, lookahead_frames=7),
    dict(chunk_frames=4, left_frames=None, lookahead_frames=10),
    dict(chunk_frames=6, left_frames=8, lookahead_frames=0),
]


def _close(got, ref, what=""):
    assert got.shape == ref.shape, what
    if ref.shape[0]:
        err = (got - ref).abs().amax(dim=1)
        assert float(err.max()) < TOL, f"{what}: frame {int(err.argmax())} differs by {float(err.max()):.2e}"


def test_plan_freezes_all_but_the_lookahead():
    def plan(*a):
        return [(g.start, g.end, g.freeze) for g in plan_groups(*a)]

    assert plan(0, 14, 5, 7, False) == [(0, 12, 5), (5, 14, 2)]  # 7..13 stay provisional
    assert plan(3, 10, 50, 7, False) == [(3, 10, 0)]  # not enough look-ahead yet: all provisional
    assert plan(10, 14, 5, 7, True) == [(10, 14, 4)]  # end of stream: everything
    assert plan(0, 30, 5, 7, True) == [(0, 12, 5), (5, 17, 5), (10, 22, 5), (15, 27, 5), (20, 30, 5), (25, 30, 5)]
    assert plan(0, 3, 5, 0, False) == [(0, 3, 3)]
    assert plan(5, 5, 5, 7, False) == []


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_streamed_window_equals_the_reference_after_every_step(whisper_encoder, settings, seed):
    rng = np.random.default_rng(seed)
    mel = torch.randn(80, int(rng.integers(150, 330)))
    enc = make_encoder(whisper_encoder, "block-lookahead", **settings)
    state = enc.create_state()
    window = torch.zeros(0, enc.d_model)
    frozen_before = torch.zeros(0, enc.d_model)
    ends = []
    for a, i, final in random_spans(rng, mel.shape[1], [4, 30, 90]):
        out = enc.step(mel[:, a:i], state, final=final)
        assert out.start <= window.shape[0]
        window = torch.cat([window[: out.start], out.frames])
        assert enc.window_frames(state) == window.shape[0]
        if out.frames.shape[0] or final:
            ends.append(window.shape[0])
        # the frozen frames never change afterwards
        _close(window[: frozen_before.shape[0]], frozen_before, "a frozen frame changed")
        frozen_before = window[: state.frozen].clone()
        if final or rng.random() < 0.3:
            # the conv front emits a frame once its mel exists: the stream has the first frames of the
            # whole input's conv outputs
            ref = lookahead_pass(whisper_encoder, mel, ends, **settings, final=final)
            _close(window, ref, f"after {i} mel frames")
    assert state.frozen == window.shape[0] == (mel.shape[1] + 1) // 2


def test_batch_of_sessions_at_different_positions(whisper_encoder):
    settings = SETTINGS[0]
    rng = np.random.default_rng(3)
    enc = make_encoder(whisper_encoder, "block-lookahead", **settings)
    mels = [torch.randn(80, n) for n in (301, 180, 77, 240)]
    states = [enc.create_state() for _ in mels]
    windows = [torch.zeros(0, enc.d_model) for _ in mels]
    ends: list[list[int]] = [[] for _ in mels]
    pos = [0] * len(mels)
    while any(p < m.shape[1] for p, m in zip(pos, mels)):
        live, chunks, fin = batch_step(rng, mels, pos, 40, join_prob=0.8)
        for b, out in zip(live, enc.step_batch(chunks, [states[b] for b in live], final=fin)):
            windows[b] = torch.cat([windows[b][: out.start], out.frames])
            if out.frames.shape[0] or states[b].finished:
                ends[b].append(windows[b].shape[0])
    for b, mel in enumerate(mels):
        _close(windows[b], lookahead_pass(whisper_encoder, mel, ends[b], **settings), f"session {b}")


def test_no_new_frames_replaces_nothing(whisper_encoder):
    enc = make_encoder(whisper_encoder, "block-lookahead", chunk_frames=5, left_frames=12, lookahead_frames=7)
    state = enc.create_state()
    enc.step(torch.randn(80, 40), state)
    out = enc.step(torch.randn(80, 0), state)
    assert out.frames.shape[0] == 0 and out.start == enc.window_frames(state) > state.frozen


def test_trim_rebases_the_window_and_reencodes_the_kept_frames(whisper_encoder):
    settings = dict(chunk_frames=5, left_frames=12, lookahead_frames=7)
    enc = make_encoder(whisper_encoder, "block-lookahead", **settings, auto_trim_keep_frames=30)
    state = enc.create_state()
    mel = torch.randn(80, 500)  # 250 frames past the 200-position window: trims itself
    window = torch.zeros(0, enc.d_model)
    for i in range(0, 500, 20):
        out = enc.step(mel[:, i : i + 20], state)
        window = torch.cat([window[: out.start], out.frames])
        assert window.shape[0] == enc.window_frames(state) <= 200
    assert state.trimmed_frames > 0
    group = 5 + 7  # cache: left + a group's frozen frames + the trash slot, then one group's scratch
    assert all(c.k.shape[2] == enc.slots + 1 + group for c in state.layers) and enc.slots == 12 + 5
    n = enc.window_frames(state)
    kept = state.history[n - 30 : n].clone()
    out = enc.trim(state, 30)
    assert out.start == 0 and out.frames.shape[0] == 30 == enc.window_frames(state)
    # the kept frames are re-encoded as one group (all see each other), the last 7 provisional again;
    # 23 frozen frames do not fit the 17 cache slots: the ones a later group can attend are kept
    _close(out.frames, lookahead_pass(whisper_encoder, None, [30], **settings, final=False, conv_out=kept,
                                      trim_first=True))
    assert state.frozen == 23
    out = enc.step(torch.randn(80, 30), state, final=True)  # ... and the stream goes on from there
    window = torch.cat([torch.zeros(out.start, enc.d_model), out.frames])[out.start :]
    end = enc.window_frames(state)
    ref = lookahead_pass(whisper_encoder, None, [30, end], **settings, conv_out=state.history[:end].clone(),
                         trim_first=True)
    _close(window, ref[23:], "after the trim")


def test_a_trim_of_part_of_the_batch_runs_on_the_resident_batch_exactly(whisper_encoder):
    # two of four batched sessions are trimmed together: they run at their rows of the resident
    # batch (no restack), and every session, trimmed or not, must then get exactly what it gets
    # stepped alone, while the batch goes on without copying any session's caches out
    settings = dict(chunk_frames=5, left_frames=12, lookahead_frames=7)
    batched = make_encoder(whisper_encoder, "block-lookahead", **settings)
    alone = make_encoder(whisper_encoder, "block-lookahead", **settings)
    rng = np.random.default_rng(5)
    mels = [torch.randn(80, 400) for _ in range(4)]
    sb = [batched.create_state() for _ in mels]
    sa = [alone.create_state() for _ in mels]
    pos = [int(rng.integers(0, 40)) for _ in mels]

    def step_all():
        chunks = []
        for b in range(4):
            k = int(rng.integers(10, 30))
            chunks.append(mels[b][:, pos[b] : pos[b] + k])
            pos[b] += k
        for b, (mel, out) in enumerate(zip(chunks, batched.step_batch(chunks, sb))):
            ref = alone.step(mel, sa[b])
            assert out.start == ref.start
            _close(out.frames, ref.frames, f"session {b}")

    for _ in range(4):
        step_all()
    storage = sb[0].layers[0].k.untyped_storage().data_ptr()
    keeps = [batched.window_frames(sb[b]) // 2 for b in (1, 3)]
    outs = batched.trim_batch([sb[1], sb[3]], keeps)
    for b, keep, out in zip((1, 3), keeps, outs):
        _close(out.frames, alone.trim(sa[b], keep).frames, f"trimmed session {b}")
    for _ in range(3):
        step_all()
    # sessions still view one resident batch: nothing was restacked
    assert all(s.layers[0].k.untyped_storage().data_ptr() == storage for s in sb)


def test_bad_settings_name_the_limit(whisper_encoder):
    with pytest.raises(ConfigError, match="chunk_frames >= 1"):
        make_encoder(whisper_encoder, "block-lookahead", chunk_frames=0)
    with pytest.raises(ConfigError, match="lookahead_frames >= 0"):
        make_encoder(whisper_encoder, "block-lookahead", lookahead_frames=-1)
