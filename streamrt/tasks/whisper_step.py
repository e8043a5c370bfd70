"""The batched step of Whisper streaming, straight through: for every ready stream take up to one
chunk of audio (``take_features``), run the encoder once for the batch and extend the decoders'
cross-attention caches, decode every stream whose window changed in one batched token loop, let
each one's policy commit (``whisper_commit.commit_from``), and re-encode the windows the commits
cut in one batched call (``run_trims``).

Data moves one way: the model (weights, settings, knobs) and the streams' plain state go in; only
the streams (and their caches) are written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from streamrt.tasks.whisper_commit import TrimBudget, commit_from
from streamrt.tasks.whisper_hypothesis import decode_request
from streamrt.tasks.whisper_stream_state import WhisperStream
from streamrt.tasks.whisper_window import forced_trim, max_window_frames, note_encoder, stalled

if TYPE_CHECKING:
    from streamrt.tasks.whisper_stream import WhisperStreamingModel


@torch.inference_mode()
def step(m: "WhisperStreamingModel", streams: Sequence[WhisperStream]) -> None:
    """Advance each ready stream by one chunk; the encoder runs once for the whole batch."""
    ready = [s for s in streams if s.is_ready()]
    m.steps += 1
    if not ready:
        return
    m.validate_step(ready)  # raises with exc.stream set, before any stream is touched
    asked = {id(s) for s in ready if s.steps_pending()}  # a StepPending or Finalize waits on the words: decode
    taken = [take_features(m, s) for s in ready]
    # the last step of a stream runs the encoder even without new frames: it flushes the
    # frames that wait for end-of-stream padding (block remainder, look-ahead)
    encode = [(s, mel, fin) for s, (mel, fin) in zip(ready, taken) if mel.shape[-1] > 0 or fin]
    if encode:
        outs = m.encoder.step_batch(
            [mel for _, mel, _ in encode], [s.encoder_state for s, _, _ in encode],
            final=[fin for _, _, fin in encode],
        )
        m.decoder.update_cross_many([_cross_update(s, out) for (s, _, _), out in zip(encode, outs)])
        for s, _, _ in encode:
            note_encoder(m, s)
    # one batched token loop for every stream whose window changed (on every policy_stride-th
    # such step), then each one's policy
    todo = [s for s in ready if s.needs_decode() and m.decides_now(s, s.is_final_step() or id(s) in asked)]
    results = m.decoder.greedy_many([decode_request(m, s) for s in todo]) if todo else []
    budget = TrimBudget(m.settings.max_trims_per_step)
    # this step's trims go to stalled streams first (a stall holds words back; a long window
    # only costs compute), then to the longest windows
    order = sorted(zip(todo, results), key=lambda p: (not stalled(m, p[0]), -p[0].window_frames))
    try:
        for s, res in order:
            commit_from(m, s, res, budget)
    finally:
        run_trims(m, todo)


def take_features(m: "WhisperStreamingModel", s: WhisperStream) -> tuple[torch.Tensor, bool]:
    """Consume up to one chunk of ``s`` (not past a pending ``Finalize``); return its new mel
    frames and whether this is the last encoder step of its window (the one that takes the last
    received sample after the end of input, or the last one before a ``Finalize``). Cuts
    the window first (``forced_trim``) when its frames would pass ``max_window_s``."""
    # a backlog (a client that sent far faster than real time, a stream that fell behind under
    # load) is worked off one chunk per step, after the end of input too: the whole of it in one
    # step went past the encoder's 1500 frames, and a last decode over seconds of new audio
    # (chunk x4, 10 s backlog) hallucinated two_cities' last ~25 words
    taken = s.take_samples(s.samples_to_take(s.chunk_samples()))
    mel = s.features.accept(taken)
    last = False
    if s.is_final_step() and not s.flushed:
        s.flushed = last = True
        tail = s.features.flush()
        mel = torch.cat([mel, tail], dim=-1) if tail.shape[-1] else mel
    new_frames = (mel.shape[-1] + 1) // 2
    limit_frames = max_window_frames(m)
    if s.window_frames + new_frames > limit_frames:
        keep = int(m.settings.forced_keep_s * 1000.0 / m.encoder.frame_ms)
        forced_trim(m, s, max(0, min(keep, limit_frames - new_frames)))
    return mel, last


def _cross_update(s: WhisperStream, out):
    """Note the encoder's output on ``s``; return the decoder cache update it needs ((cache,
    frames, start) for ``update_cross_many``)."""
    if out.frames.shape[0] or out.start < s.cache.n_valid:
        s.window_changed = True
    return s.cache, out.frames, out.start


def run_trims(m: "WhisperStreamingModel", streams: Sequence[WhisperStream]) -> None:
    """The cuts this step's commits decided, as one batched re-encode of every kept window."""
    trims = [(s, keep) for s in streams if (keep := s.take_pending_trim()) is not None]
    if not trims:
        return
    outs = m.encoder.trim_batch([s.encoder_state for s, _ in trims], [keep for _, keep in trims])
    m.decoder.update_cross_many([(s.cache, o.frames, o.start) for (s, _), o in zip(trims, outs)])
    for s, _ in trims:
        note_encoder(m, s)
