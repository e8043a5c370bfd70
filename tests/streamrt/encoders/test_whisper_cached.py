"""Chunked-with-cache == one full pass with the same mask (DESIGN.md "Invariants"; issue 3).

Block-causal is CarelessWhisper's encoder mask; sliding with look-ahead is Moonshine v2's. The reference
runs transformers' own WhisperEncoderLayer.forward with the mask, so the cache code is checked against
an independent implementation, per frame.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamrt.encoders.base import BlockCausal, EncoderOutput, Sliding, StreamingEncoder
from streamrt.encoders.reference import whisper_full_pass
from streamrt.encoders.factory import make_encoder
from streamrt.errors import ConfigError, InputError, LimitExceeded
from tests.streamrt.encoders.random_chunks import batch_step, random_spans

TOL = 2e-5

MODES = [
    ("block-causal", dict(chunk_frames=7, left_frames=10), BlockCausal(7, 10)),
    ("block-causal", dict(chunk_frames=5, left_frames=None), BlockCausal(5, None)),
    ("block-causal", dict(chunk_frames=1, left_frames=3), BlockCausal(1, 3)),
    ("sliding", dict(left_frames=9, lookahead_frames=2, substep_frames=5), Sliding(9, 2)),
    ("sliding", dict(left_frames=6, lookahead_frames=0), Sliding(6, 0)),
]


def _drive(enc, mel, rng, max_chunk, state=None):
    state = state or enc.create_state()
    outs = []
    for a, b, final in random_spans(rng, mel.shape[1], max_chunk):
        out = enc.step(mel[:, a:b], state, final=final)
        assert out.start == sum(o.shape[0] for o in outs), "cached modes only extend the window"
        outs.append(out.frames)
    return torch.cat(outs), state


def _assert_per_frame(got, ref):
    assert got.shape == ref.shape
    if not ref.shape[0]:
        return
    err = (got - ref).abs().amax(dim=1)
    assert float(err.max()) < TOL, f"frame {int(err.argmax())} differs by {float(err.max()):.2e}"


@pytest.mark.parametrize("mode,settings,pattern", MODES)
@pytest.mark.parametrize("seed", [0, 1])
def test_chunked_with_cache_equals_full_pass(whisper_encoder, mode, settings, pattern, seed):
    rng = np.random.default_rng(seed)
    mel = torch.randn(80, int(rng.integers(150, 390)))
    enc = make_encoder(whisper_encoder, mode, **settings)
    assert isinstance(enc, StreamingEncoder)
    got, state = _drive(enc, mel, rng, max_chunk=int(rng.choice([3, 25, 120])))
    _assert_per_frame(got, whisper_full_pass(whisper_encoder, mel, pattern))
    assert enc.window_frames(state) == got.shape[0] == (mel.shape[1] + 1) // 2


@pytest.mark.parametrize("mode,settings,pattern", MODES[:1] + MODES[3:4])
def test_batch_of_sessions_at_different_positions(whisper_encoder, mode, settings, pattern):
    rng = np.random.default_rng(7)
    enc = make_encoder(whisper_encoder, mode, **settings)
    mels = [torch.randn(80, n) for n in (301, 180, 77, 240)]
    states = [enc.create_state() for _ in mels]
    pos = [0, 60, 0, 31]  # sessions start at different positions (and one joins later)
    for b in range(len(mels)):
        if pos[b]:
            enc.step(mels[b][:, : pos[b]], states[b])
    got = [[] for _ in mels]
    for b in range(len(mels)):
        got[b].append(torch.zeros(enc.window_frames(states[b]), enc.d_model))  # placeholder prefix
    while any(p < m.shape[1] for p, m in zip(pos, mels)):
        live, chunks, fin = batch_step(rng, mels, pos, 30)
        outs = enc.step_batch(chunks, [states[b] for b in live], final=fin)
        for b, out in zip(live, outs):
            assert out.start == sum(g.shape[0] for g in got[b])
            got[b].append(out.frames)
    for b, mel in enumerate(mels):
        ref = whisper_full_pass(whisper_encoder, mel, pattern)
        full = torch.cat(got[b])
        skip = got[b][0].shape[0]
        _assert_per_frame(full[skip:], ref[skip:])


def test_cache_shapes_do_not_grow_with_the_stream(whisper_encoder):
    enc = make_encoder(whisper_encoder, "block-causal", chunk_frames=4, left_frames=8, auto_trim_keep_frames=20)
    state = enc.create_state()
    shapes = None
    for i in range(30):  # 1200 mel frames = 600 encoder frames, 3x the 200-position window
        enc.step(torch.randn(80, 40), state)
        now = [(c.k.shape, c.v.shape, c.slot_pos.shape) for c in state.layers]
        shapes = shapes or now
        assert now == shapes
        assert all(p.shape[0] < 4 for c in state.layers for p in c.pending)
        assert state.history.shape == (200, 64)
        assert enc.window_frames(state) <= 200
    assert shapes[0][0] == (1, 4, enc.slots + 1, 16)
    assert enc.slots == 8 + 2 * 4 + 32
    assert state.trimmed_frames > 400


def test_trim_rebases_the_window_and_reencodes_the_kept_frames(whisper_encoder):
    enc = make_encoder(whisper_encoder, "block-causal", chunk_frames=5, left_frames=None)
    mel = torch.randn(80, 240)
    state = enc.create_state()
    enc.step(mel[:, :200], state)
    assert enc.window_frames(state) == 95
    out = enc.trim(state, 40)  # keep window frames 55..94 (mel 110..189), re-based to positions 0..
    assert out.start == 0 and out.frames.shape[0] == 40
    rest = enc.step(mel[:, 200:], state, final=True)
    assert rest.start == 40
    window = torch.cat([out.frames, rest.frames])
    # the reference: same conv outputs, positions from 0, same mask
    from streamrt.encoders.whisper_front import conv_front_step, new_conv_tail

    x = conv_front_step(whisper_encoder, new_conv_tail(80, 64), mel, final=True)[55:]
    h = (x + whisper_encoder.embed_positions.weight[: x.shape[0]])[None]
    n = x.shape[0]
    from streamrt.encoders.base import pattern_mask

    add = torch.zeros(n, n).masked_fill(~pattern_mask(BlockCausal(5, None), n), -1e30)[None, None]
    with torch.inference_mode():
        for layer in whisper_encoder.layers:
            h = layer(h, add)
        ref = whisper_encoder.layer_norm(h)[0]
    _assert_per_frame(window, ref)
    assert state.trimmed_frames == 55


def test_window_limit_is_reported_with_numbers(whisper_encoder):
    enc = make_encoder(whisper_encoder, "sliding", left_frames=16)
    state = enc.create_state()
    enc.step(torch.randn(80, 390), state)
    with pytest.raises(LimitExceeded, match="max_window_frames") as err:
        enc.step(torch.randn(80, 20), state)
    assert err.value.limit == 200 and err.value.value > 200


def test_bad_settings_and_inputs(whisper_encoder):
    with pytest.raises(ConfigError, match="unknown encoder mode"):
        make_encoder(whisper_encoder, "bidirectional")
    with pytest.raises(ConfigError):
        make_encoder(whisper_encoder, "block-causal", chunk_frames=0)
    enc = make_encoder(whisper_encoder, "block-causal", chunk_frames=4)
    state = enc.create_state()
    with pytest.raises(InputError, match="bins"):
        enc.step(torch.randn(128, 10), state)
    enc.step(torch.randn(80, 10), state, final=True)
    with pytest.raises(InputError, match="finished"):
        enc.step(torch.randn(80, 10), state)
    assert isinstance(EncoderOutput(torch.zeros(3, 4), 2).end, int)


def test_pending_frames_say_when_a_step_fits(whisper_encoder):
    enc = make_encoder(whisper_encoder, "block-causal", chunk_frames=8, left_frames=16)
    state = enc.create_state()
    enc.step(torch.randn(80, 380), state)  # 189 conv frames (one waits for a mel frame): 184 out, 5 in a block
    assert enc.window_frames(state) == 184 and enc.pending_frames(state) == 5
    room = enc.max_window_frames - enc.window_frames(state) - enc.pending_frames(state)
    enc.step(torch.randn(80, 2 * room), state)  # exactly fills the 200 positions
    with pytest.raises(LimitExceeded):
        enc.step(torch.randn(80, 4), state)


def test_resident_batch_survives_changing_membership(whisper_encoder):
    """The encoder keeps its last batch resident (sessions hold views of it): stepping changing
    subsets (the same batch again after a session stepped alone or was trimmed, new members, fewer
    members) must give each session exactly what it gets stepped alone, and a session that leaves
    the batch must not keep the batch's memory alive."""
    rng = np.random.default_rng(11)
    settings = dict(chunk_frames=5, left_frames=12)
    batched = make_encoder(whisper_encoder, "block-causal", **settings)
    alone = make_encoder(whisper_encoder, "block-causal", **settings)
    mels = [torch.randn(80, 600) for _ in range(4)]
    pos = [0] * 4
    sb = [batched.create_state() for _ in mels]
    sa = [alone.create_state() for _ in mels]
    schedule = [[0, 1, 2], [0, 1, 2], [0], [0, 1, 2], "trim 1", [0, 1, 2], [3, 1], [3, 1], [2],
                [0, 1, 2, 3], [0, 1, 2, 3], [2, 0], [0, 1, 2, 3]]
    for members in schedule:
        if isinstance(members, str):
            b = int(members.split()[1])
            keep = batched.window_frames(sb[b]) // 2
            _assert_per_frame(batched.trim(sb[b], keep).frames, alone.trim(sa[b], keep).frames)
            continue
        chunks = []
        for b in members:
            k = int(rng.integers(8, 30))
            chunks.append(mels[b][:, pos[b] : pos[b] + k])
            pos[b] += k
        outs = batched.step_batch(chunks, [sb[b] for b in members])
        for b, mel, out in zip(members, chunks, outs):
            ref = alone.step(mel, sa[b])
            assert out.start == ref.start
            _assert_per_frame(out.frames, ref.frames)
        if len(members) > 1:
            for b in set(range(4)) - set(members):  # left the batch: its own memory only
                k = sb[b].layers[0].k
                assert k.untyped_storage().nbytes() == k.numel() * k.element_size()


def test_batched_conv_front_equals_each_session_alone(whisper_encoder):
    # sessions at different mel positions, with different chunk lengths (0, 1 and 2 mel frames
    # complete nothing yet) and ending at different steps: one batched conv per layer must give
    # every session exactly what its own conv gives
    from streamrt.encoders.whisper_front import conv_front_step, conv_front_steps, new_conv_tail

    rng = np.random.default_rng(7)
    n = 5
    batched = [new_conv_tail(80, 64) for _ in range(n)]
    alone = [new_conv_tail(80, 64) for _ in range(n)]
    ends = [3, 4, 5, 6, 6]
    with torch.inference_mode():
        for step in range(7):
            live = [i for i in range(n) if step < ends[i]]
            mels = [torch.randn(80, int(rng.choice([0, 1, 2, 7, 30]))) for _ in live]
            finals = [step == ends[i] - 1 for i in live]
            got = conv_front_steps(whisper_encoder, [batched[i] for i in live], mels, finals)
            for i, mel, fin, g in zip(live, mels, finals, got):
                want = conv_front_step(whisper_encoder, alone[i], mel, fin)
                assert g.shape == want.shape
                assert torch.allclose(g, want, atol=1e-5), (step, i)
            assert [batched[i].out_count for i in live] == [alone[i].out_count for i in live]


@pytest.mark.parametrize("mode,settings", [
    ("block-causal", dict(chunk_frames=7, left_frames=10)),
    ("block-lookahead", dict(chunk_frames=6, left_frames=12, lookahead_frames=4)),
    ("reencode", {}),
])
def test_a_batched_trim_equals_each_session_trimmed_alone(whisper_encoder, mode, settings):
    # sessions of different lengths keep different numbers of frames; the batched re-encode (one
    # padded pass) must give each what its own trim gives, and leave states that step on alike
    torch.manual_seed(3)
    enc = make_encoder(whisper_encoder, mode, **settings)
    mels = [torch.randn(80, n) for n in (120, 90, 150)]
    keeps = [13, 0, 40]
    batched = [enc.create_state() for _ in mels]
    alone = [enc.create_state() for _ in mels]
    for mel, a, b in zip(mels, batched, alone):
        enc.step(mel, a)
        enc.step(mel, b)
    outs = enc.trim_batch(batched, keeps)
    more = torch.randn(80, 30)
    for out, a, b, keep in zip(outs, batched, alone, keeps):
        want = enc.trim(b, keep)
        assert out.start == want.start == 0
        _assert_per_frame(out.frames, want.frames)
        _assert_per_frame(enc.step(more, a).frames, enc.step(more, b).frames)
