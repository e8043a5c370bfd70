"""One stream's decision after its decode: the hypothesis (guards applied), the policy's answer,
the commit of whole words, and the cut of the window that follows (a history selection, a stall
reset, or a trim at the committed words), within the step's trim budget.

``commit_from(m, s, res, budget)`` is called by the batched step (``whisper_step``) for each stream
it decoded; cuts are only decided here (``WhisperStream.pending_trim``), the step runs them. The
step that ends a segment (``Finalize``) commits everything and starts the next segment here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from policies.base import HypToken, PolicyView, Write, word_spans
from streamrt.decoding import DecodeResult
from streamrt.tasks.whisper_hypothesis import commit_words, decode_whole, hypothesis
from streamrt.tasks.whisper_stream_state import WhisperStream
from streamrt.tasks.whisper_window import (
    apply_history, committed_cut_frames, context_derails, drop_context, new_segment, reset_stall,
    stall_reset_possible, stalled, trim_at_committed,
)

if TYPE_CHECKING:
    from streamrt.tasks.whisper_stream import WhisperStreamingModel


class TrimBudget:
    """The trims one step may still decide (``max_trims_per_step``; None: no limit). A trim
    re-encodes the kept window and re-runs the decoder's prefix, so streams that started together
    would otherwise all pay it in the same step."""

    def __init__(self, limit: int | None):
        self.left = limit

    def take(self) -> bool:
        """One trim, if any is left."""
        if self.left is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True


def commit_from(m: "WhisperStreamingModel", s: WhisperStream, res: DecodeResult, budget: TrimBudget) -> None:
    """Turn a decode of ``decode_request(m, s)`` into the hypothesis, ask the policy, commit whole
    words, and decide a cut of the window (left to the step: ``s.pending_trim``)."""
    st = m.settings
    s.stats["steps"] += 1
    s.window_changed = False
    final = s.is_final_step()
    _, hyp_tokens = hypothesis(m, s, res)
    if final:
        hyp_tokens = final_afresh(m, s, hyp_tokens)
    view = PolicyView(
        source_ms=s.consumed_ms,
        source_finished=final,
        window_start_ms=s.window_start_ms,
        frame_ms=m.encoder.frame_ms,
        n_frames=s.window_frames,
        committed=tuple(s.committed_texts),
        hypothesis=tuple(hyp_tokens),
        committed_start_ms=tuple(s.committed_starts),
    )
    action = Write(len(hyp_tokens), final=True) if final else s.policy.decide(view)
    count = 0
    if isinstance(action, Write):
        count = min(max(action.count, 0), len(hyp_tokens))
    spans = word_spans([t.text for t in hyp_tokens])
    if not final:
        # whole words only, and the hypothesis' last word may still grow
        ends = [b for _, b in spans if b <= count and b < len(hyp_tokens)]
        count = ends[-1] if ends else 0
    commit_words(m, s, hyp_tokens, spans, count)
    rest = hyp_tokens[count:]
    s.partial = m.bundle.tokenizer.decode([t.id for t in rest]).strip()
    if final:
        s.partial = ""
        if s.ends_input():
            s.done = True
        else:  # a Finalize: the stream goes on, the audio after it in a fresh window
            new_segment(m, s)
        return
    after = replace(view, committed=tuple(s.committed_texts), hypothesis=tuple(rest),
                    committed_start_ms=tuple(s.committed_starts))
    selection = s.policy.select_history(after)
    if selection is not None:
        apply_history(m, s, selection)
    elif count == 0 and stalled(m, s) and stall_reset_possible(m, s) and budget.take():
        reset_stall(m, s)
    elif (s.window_frames * m.encoder.frame_ms > st.trim_after_s * 1000.0
          and committed_cut_frames(m, s, st.trim_keep_words) >= max(1.0, st.trim_min_drop * s.window_frames)
          and budget.take()):
        trim_at_committed(m, s, st.trim_keep_words, defer=True)


def final_afresh(m: "WhisperStreamingModel", s: WhisperStream, toks: list[HypToken]) -> list[HypToken]:
    """The stream's last decode, ``toks``, ends ``stall_reset_s`` or more before its audio does,
    with context that may have derailed it and no committed word with audio in the window:
    decode the window once more without that context (``drop_context``) and keep that decode
    unless it heard less far (the first one is suspect), so a derail at the end does not lose
    the words after it (after "...received for good or for": "good or for" again, and the end
    lost). Returns the tokens to commit."""
    if not context_derails(m, s):
        return toks
    before = (s.prompt, s.window_words, s.heard_from_ms, s.heard_until_ms)
    drop_context(s)
    _, fresh = decode_whole(m, s)
    if fresh and (before[3] is None or (s.heard_until_ms or 0.0) >= before[3]):
        s.stats["stall_resets"] += 1
        return fresh
    s.prompt, s.window_words, s.heard_from_ms, s.heard_until_ms = before
    return toks
