"""One stream's decode, from request to committed words: the forced prefix and the request
(``decode_request``), the decode as the policy sees it with the loop and seam guards
(``hypothesis``), and the commit of whole words (``commit_words``).

Functions of the model (``m``: settings, encoder, decoder, tokenizer) and one stream's state
(``s``, a ``WhisperStream``); they write only the stream.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Sequence

import numpy as np

from policies.base import HypToken, word_spans
from streamrt.decoding import DecodeRequest, DecodeResult, compression_ratio, token_times
from streamrt.engine import UnitDraft
from streamrt.tasks.whisper_stream_state import WhisperStream, Word

if TYPE_CHECKING:
    from streamrt.tasks.whisper_stream import WhisperStreamingModel


def window_end_ms(m: "WhisperStreamingModel", s: WhisperStream) -> float:
    """Media time of the window's end."""
    return s.window_start_ms + s.window_frames * m.encoder.frame_ms


def prefix(m: "WhisperStreamingModel", s: WhisperStream) -> list[int]:
    """The decoder's forced prefix: the prompt (``<|startofprev|>`` + the last max_prompt_tokens..2x
    committed tokens before the window, see ``whisper_window.cut_window``), the start sequence, and
    the committed words in the window."""
    st = m.settings
    out: list[int] = []
    if st.max_prompt_tokens and s.prompt:
        out = [m.sot_prev] + s.prompt[-2 * st.max_prompt_tokens :]
    out += s.sot
    for w in s.window_words:
        out += w.tokens
    return out


def decode_request(m: "WhisperStreamingModel", s: WhisperStream, *, whole: bool = False) -> DecodeRequest:
    """What to decode this step: the forced prefix, the tail's token cap, and where the policy
    lets decoding stop (``Policy.stop_rule``; not at the end of the stream, nor when ``whole``)."""
    st = m.settings
    uncommitted_s = max(0.0, (window_end_ms(m, s) - s.committed_end_ms()) / 1000.0)
    cap = st.max_hypothesis_tokens
    if st.max_tokens_per_s is not None:
        cap = min(cap, int(uncommitted_s * st.max_tokens_per_s) + 8)
    stop = None
    partial = not whole and not s.is_final_step()  # the last decode runs to the end
    if st.stop_at_policy and partial:
        stop = s.policy.stop_rule(s.window_frames)
    iterations = m.loop_iterations() if partial else None
    return DecodeRequest(s.cache, prefix(m, s), cap, st.reuse_prefix_kv, m.guard, stop, iterations, st.beam())


def decode_whole(m: "WhisperStreamingModel", s: WhisperStream) -> tuple[list[int], list[HypToken]]:
    """The whole hypothesis now, loops cut but never blanked (a forced trim commits every word
    before its cut: an empty hypothesis there would drop the words of the audio it cuts)."""
    res = m.decoder.greedy_many([decode_request(m, s, whole=True)])[0]
    return hypothesis(m, s, res, blank_loops=False)


def hypothesis(m: "WhisperStreamingModel", s: WhisperStream, res: DecodeResult, *,
               blank_loops: bool = True) -> tuple[list[int], list[HypToken]]:
    """The decode as the policy sees it. ``blank_loops``: hide a hypothesis more repetitive than
    ``max_compression_ratio`` (a loop) from the policy; back-to-back repeated spans are cut
    either way. Notes where the decoder heard its first and last token (``heard_from_ms``,
    ``heard_until_ms``), guards or not, so a stall reset never cuts audio that holds words."""
    st = m.settings
    frame_ms = m.encoder.frame_ms
    if res.stopped_by == "repetition":
        s.stats["repetition_stops"] += 1
    ids = list(res.tokens)
    texts = [m.bundle.tokenizer.token_text(t) for t in ids]
    att = res.attention
    final = s.is_final_step()
    first_frame = max(0, int((s.committed_end_ms() - s.window_start_ms) // frame_ms))
    s.heard_from_ms = s.heard_until_ms = None
    if ids:
        heard, _ = token_times(att, window_start_ms=s.window_start_ms, frame_ms=frame_ms,
                               first_frame=first_frame, last_frame=s.window_frames, method=st.alignment)
        s.heard_from_ms, s.heard_until_ms = float(heard[0]), float(heard[-1])
    if blank_loops and st.max_compression_ratio is not None and not final:
        text = "".join(texts)
        if len(text) > 40 and compression_ratio(text) > st.max_compression_ratio:
            s.stats["repetition_stops"] += 1
            ids, texts, att = [], [], att[:0]
    toks = _tokens(m, s, ids, texts, att, res.logprobs, first_frame)
    cut = repeated_span(toks, s.window_words, s.window_start_ms, frame_ms, st.repeated_span_words)
    if cut is not None:
        s.stats["repetition_stops"] += 1
        ids = ids[:cut]
        toks = _tokens(m, s, ids, texts[:cut], att[:cut], res.logprobs, first_frame)
    dropped = seam_duplicates(toks, s.window_words, s.committed_texts, st.seam_max_words)
    if dropped:
        s.stats["seam_drops"] += 1
        skipped = toks[:dropped]
        # heard again across the seam: forced silently, never emitted twice
        s.window_words.append(Word("", [t.id for t in skipped], skipped[0].start_ms, skipped[-1].end_ms))
        toks, ids = toks[dropped:], ids[dropped:]
    return ids, toks


def _tokens(m: "WhisperStreamingModel", s: WhisperStream, ids: list[int], texts: list[str], att: np.ndarray,
            logprobs, first_frame: int) -> list[HypToken]:
    """The decoded tokens with their alignment (``token_times``) and attention rows."""
    starts, ends = token_times(
        att, window_start_ms=s.window_start_ms, frame_ms=m.encoder.frame_ms,
        first_frame=first_frame, last_frame=s.window_frames, method=m.settings.alignment,
    )
    return [
        HypToken(t, x, float(a), float(b), att[i], lp)
        for i, (t, x, a, b, lp) in enumerate(zip(ids, texts, starts, ends, logprobs))
    ]


def repeated_span(toks: Sequence[HypToken], window_words: Sequence[Word], window_start_ms: float,
                  frame_ms: float, min_words: int | None) -> int | None:
    """Token index where the hypothesis starts repeating, back to back, the run of words just
    before it (hypothesis words or the committed ``window_words``), else None:

    - a run of L >= ``min_words`` (``repeated_span_words``) words whatever it attends to (Whisper's
      sentence loops: "X. X. X."); repeats that are not adjacent ("it was the age of wisdom, it was
      the age of foolishness") are speech, not loops, and are kept;
    - a shorter run when its second copy re-reads the first one's audio: no word of it is heard
      (its first token's attention peak) later than the first copy's last word starts. At the
      window's end Whisper repeats the phrase it has just transcribed that way ("Fail better.
      Fail better." on beckett.wav, the repeat attending back to the same 0.4 s); a speaker's
      own repeats ("no, no") are heard one after the other, and are kept."""
    if not min_words or not toks:
        return None
    spans = word_spans([t.text for t in toks])
    # per word: its normalised text, where it starts (monotonic alignment) and where its first
    # token's attention peaks (a committed word: where it starts)
    words = [(norm(w.text), w.start_ms, w.start_ms) for w in window_words if w.text]
    first_hyp = len(words)
    for a, b in spans:
        tok = toks[a]
        peak = tok.start_ms
        if tok.attention is not None and len(tok.attention):
            peak = window_start_ms + int(np.argmax(tok.attention)) * frame_ms
        words.append((norm("".join(t.text for t in toks[a:b])), tok.start_ms, peak))
    texts = [w[0] for w in words]
    for i in range(max(first_hyp, 1), len(words)):
        for length in range(1, min(i, len(words) - i) + 1):
            if texts[i : i + length] != texts[i - length : i]:
                continue
            first_copy_ends = words[i - 1][1]  # where its last word starts
            rereads = all(texts[i : i + length]) and all(w[2] <= first_copy_ends for w in words[i : i + length])
            if length >= min_words or rereads:
                return spans[i - first_hyp][0]
    return None


def seam_duplicates(toks: Sequence[HypToken], window_words: Sequence[Word], committed_texts: Sequence[str],
                    max_words: int) -> int:
    """Tokens to drop: the first k <= ``max_words`` (``seam_max_words``) hypothesis words equal the
    committed tail (whisper_streaming's HypothesisBuffer.insert); checked only just after a trim,
    while no committed word is in the window."""
    if window_words or not committed_texts or not toks:
        return 0
    spans = word_spans([t.text for t in toks])
    words = [norm("".join(t.text for t in toks[a:b])) for a, b in spans]
    tail = [norm(w) for w in committed_texts[-max_words:]]
    for k in range(min(len(tail), len(words)), 0, -1):
        if words[:k] == tail[-k:] and all(words[:k]):
            return spans[k - 1][1]
    return 0


def commit_words(m: "WhisperStreamingModel", s: WhisperStream, toks: list[HypToken],
                 spans: list[tuple[int, int]], count: int) -> None:
    """Commit the whole words of ``toks[:count]``: into the window (forced from now on), the
    committed texts, and the stream's output."""
    for a, b in spans:
        if b > count:
            break
        piece = toks[a:b]
        # decode the ids together: a character split over tokens comes out whole
        text = m.bundle.tokenizer.decode([t.id for t in piece]).strip()
        w = Word(text, [t.id for t in piece], piece[0].start_ms, piece[-1].end_ms)
        s.window_words.append(w)
        if text:
            s.committed_texts.append(text)
            s.committed_starts.append(w.start_ms)
            end = min(w.end_ms, s.consumed_ms)
            s.out.append(UnitDraft(text, min(w.start_ms, end), end, s.consumed_ms))


_PUNCT = re.compile(r"[^\w']+")


def norm(word: str) -> str:
    """A word as the guards compare it: lower case, punctuation dropped."""
    return _PUNCT.sub("", word.lower())
