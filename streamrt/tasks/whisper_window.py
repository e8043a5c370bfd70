"""One stream's encoder window: where and when it is cut, without dropping a word.

- ``trim_at_committed``: at a committed word once the window is long (``trim_after_s``);
- ``forced_trim``: before a step's frames would pass ``max_window_s``, committing a whole decode's
  words before the cut;
- stalls (``stalled``, ``reset_stall``): nothing written although ``stall_reset_s`` of audio follow
  the last committed word; the reset cuts at that word, or drops the context that derails the
  decoder, or cuts only audio in which the decoder heard nothing;
- ``apply_history``: a history-selecting policy's choice (StreamAtt);
- ``new_segment``: after a ``Finalize``, the whole window (every word in it committed).

A cut moves the committed words before it from the forced prefix to the prompt. During a step's
commits a cut is only decided (``defer=True``: ``WhisperStream.pending_trim``); the step re-encodes
the kept windows of every trimming stream in one batched call (``whisper_step``).
Functions of the model (``m``) and one stream's state (``s``); they write only the stream, and the
encoder state and decoder cache that are the stream's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from policies.base import HistorySelection, word_spans
from streamrt.tasks.whisper_hypothesis import commit_words, decode_whole, window_end_ms
from streamrt.tasks.whisper_stream_state import WhisperStream

if TYPE_CHECKING:
    from streamrt.tasks.whisper_stream import WhisperStreamingModel


def note_encoder(m: "WhisperStreamingModel", s: WhisperStream) -> None:
    """Read the window's length back from the encoder state, after any encoder call on it."""
    s.window_frames = m.encoder.window_frames(s.encoder_state)


def max_window_frames(m: "WhisperStreamingModel") -> int:
    """Encoder frames the window may hold (``max_window_s``)."""
    return int(m.max_window_s * 1000.0 / m.encoder.frame_ms)


# ---- stalls ----------------------------------------------------------------------------------------
def stalled(m: "WhisperStreamingModel", s: WhisperStream) -> bool:
    """Nothing was written although ``stall_reset_s`` of audio follow the last committed word:
    a pause, or a decoder derailed by a wrong forced prefix or prompt (after a misheard word
    Whisper says one more word at the window's start and ends, decode after decode, or loops
    on a word that keeps "listening").

    While the last decode follows the audio to the window's end (``follows_audio``), the limit
    grows with the ladder's longer chunks, and with its policy stride for a policy that needs
    several decodes to write a word (``m.stall_stretch(policy.decodes_to_commit())``):
    LocalAgreement-2 needs two decodes to agree on a word, so at 4 s steps a 4 s limit would
    call every first sight of a word a stall. A decode that stopped short (a pause, a derail) is
    a stall after ``stall_reset_s`` at any step length."""
    limit = m.settings.stall_reset_s
    if limit is None:
        return False
    if follows_audio(m, s):
        limit *= m.stall_stretch(s.policy.decodes_to_commit())
    return window_end_ms(m, s) - s.committed_end_ms() >= limit * 1000.0


def follows_audio(m: "WhisperStreamingModel", s: WhisperStream) -> bool:
    """The last decode heard a token in the window's last ``stall_reset_s``: it transcribes the
    audio to its end (its words not written yet are the policy's to commit), rather than
    hearing a pause or stopping early, derailed."""
    if s.heard_until_ms is None or m.settings.stall_reset_s is None:
        return False
    return s.heard_until_ms >= window_end_ms(m, s) - 1000.0 * m.settings.stall_reset_s


def reset_stall(m: "WhisperStreamingModel", s: WhisperStream) -> None:
    """Get a stalled stream going again without dropping a word it could still transcribe:

    - committed words in the window: cut the window at the last one, so they leave the forced
      prefix for the prompt and the decoder reads the unconfirmed audio afresh;
    - none, and the last decode derailed (``derailed``): drop the context that derails it
      (``drop_context``) and decode the same audio afresh;
    - none, and nothing to drop: cut the audio in which the decoder heard nothing
      (``pause_cut_ms``)."""
    if committed_cut_frames(m, s):
        trim_at_committed(m, s, defer=True)
    elif context_derails(m, s):
        drop_context(s)
    else:
        cut_window(m, s, pause_cut_ms(m, s), defer=True)
    s.stats["stall_resets"] += 1


def stall_reset_possible(m: "WhisperStreamingModel", s: WhisperStream) -> bool:
    """Whether ``reset_stall`` would change anything now (a cut that drops frames, or context
    to drop)."""
    if committed_cut_frames(m, s) or context_derails(m, s):
        return True
    return int((pause_cut_ms(m, s) - s.window_start_ms) // m.encoder.frame_ms) > 0


def derailed(m: "WhisperStreamingModel", s: WhisperStream) -> bool:
    """The last decode heard nothing, or stopped, ``stall_reset_s`` or more before the window's
    end: a pause, or a decoder derailed by its context. After a trim the prompt ("...trees
    along the northern") makes Whisper say one word at the window's start ("room.") and end,
    or end at once, decode after decode, over seconds of speech."""
    return m.settings.stall_reset_s is not None and not follows_audio(m, s)


def context_derails(m: "WhisperStreamingModel", s: WhisperStream) -> bool:
    """The last decode derailed, with context to drop and no committed word with audio in the
    window to cut at: decoding the window afresh (``drop_context``) is the remedy."""
    return derailed(m, s) and s.has_context() and not committed_cut_frames(m, s)


def drop_context(s: WhisperStream) -> None:
    """Decode the window afresh: without the prompt (committed text before the window) and
    without the committed words left in it (none holds audio there, or the window would have
    been cut at them; a word aligned to no frame stays at a cut). They stay committed; one the
    decoder hears again is dropped as a seam duplicate."""
    s.prompt, s.window_words = [], []


def pause_cut_ms(m: "WhisperStreamingModel", s: WhisperStream) -> float:
    """Where a stall reset cuts a window without a committed word: its last ``stall_reset_s`` / 2
    stays, and so does everything from the first token of the last decode on. Only audio in
    which the decoder heard nothing goes: words not committed yet (a policy that needs more
    decodes, the last word before a pause, a loop the guards hid) are the policy's to commit
    later, or the forced trim's at ``max_window_s``."""
    cut_ms = window_end_ms(m, s) - 500.0 * m.settings.stall_reset_s
    if s.heard_from_ms is not None:
        cut_ms = min(cut_ms, s.heard_from_ms)
    return cut_ms


# ---- cuts ------------------------------------------------------------------------------------------
def committed_cut_ms(s: WhisperStream, keep_words: int = 0) -> float:
    """Where a trim at the committed words cuts: the end of the last one, or with ``keep_words``
    the start of the ``keep_words``-th last one, so that many stay in the window as forced
    prefix (the window's start while fewer are in it)."""
    words = s.window_words
    if not keep_words:
        return words[-1].end_ms if words else s.window_start_ms
    return words[-keep_words].start_ms if len(words) >= keep_words else s.window_start_ms


def committed_cut_frames(m: "WhisperStreamingModel", s: WhisperStream, keep_words: int = 0) -> int:
    """Frames a trim at the committed words (``committed_cut_ms``) would drop (0: nothing
    committed in the window since the last trim, e.g. a policy that keeps reading)."""
    return max(0, int((committed_cut_ms(s, keep_words) - s.window_start_ms) // m.encoder.frame_ms))


def trim_at_committed(m: "WhisperStreamingModel", s: WhisperStream, keep_words: int = 0, *,
                      defer: bool) -> None:
    """Drop the window's audio before the end of the last committed word, or before the start
    of the ``keep_words``-th last one (``trim_keep_words``; a stall reset keeps none: a misheard
    forced word is what derails the decoder then)."""
    if not committed_cut_frames(m, s, keep_words):
        return
    cut_window(m, s, committed_cut_ms(s, keep_words), defer=defer)
    s.stats["trims"] += 1


def forced_trim(m: "WhisperStreamingModel", s: WhisperStream, keep_frames: int) -> None:
    """The window would pass max_window_s with this step's frames: cut it to its last
    ``keep_frames`` at most, without dropping a word. Unless committed words already reach
    the cut, a whole decode of the window (loops cut, never blanked; decoded again without its
    context if derailed) is committed up to its last word that starts before the cut; the cut
    then moves to the end of the last committed word where that lies later, so all audio it
    drops is committed text. Runs before the step's encoder call, at once."""
    cut_ms = window_end_ms(m, s) - keep_frames * m.encoder.frame_ms
    if not (s.window_words and s.window_words[-1].end_ms >= cut_ms):
        toks = []
        if s.cache.n_frames:
            _, toks = decode_whole(m, s)
            if context_derails(m, s):
                drop_context(s)  # hear the window afresh before cutting it
                _, toks = decode_whole(m, s)
        spans = word_spans([t.text for t in toks])
        count = 0
        for a, b in spans:
            if toks[a].start_ms < cut_ms:
                count = b
        commit_words(m, s, toks, spans, count)
    if s.window_words:
        cut_ms = max(cut_ms, s.window_words[-1].end_ms)
    cut_window(m, s, cut_ms, defer=False)
    s.stats["forced_trims"] += 1


def apply_history(m: "WhisperStreamingModel", s: WhisperStream, sel: HistorySelection) -> None:
    """A history-selecting policy's choice (StreamAtt): drop audio before ``audio_from_ms`` (when
    that frees at least ``history_min_cut_s``) and keep ``text_words`` committed words of text:
    the words whose audio stays in the window are forced, older ones go in the prompt."""
    if sel.audio_from_ms - s.window_start_ms >= m.settings.history_min_cut_s * 1000.0:
        cut_window(m, s, sel.audio_from_ms, defer=True)
        s.stats["trims"] += 1
    in_window = sum(1 for w in s.window_words if w.text)
    keep = max(0, sel.text_words - in_window)
    older = s.committed_texts[: len(s.committed_texts) - in_window]
    text = " ".join(older[len(older) - keep :]) if keep else ""
    s.prompt = m.bundle.tokenizer.encode(" " + text) if text else []


def trim_now(m: "WhisperStreamingModel", s: WhisperStream, keep_frames: int) -> None:
    """Re-encode the window's last ``keep_frames`` and give the decoder the new window."""
    out = m.encoder.trim(s.encoder_state, keep_frames)
    m.decoder.update_cross(s.cache, out.frames, out.start)
    note_encoder(m, s)


def cut_window(m: "WhisperStreamingModel", s: WhisperStream, cut_ms: float, *, defer: bool) -> None:
    """Drop the window's audio before ``cut_ms`` (whole frames). ``defer``: leave the re-encode to
    the end of the step (``pending_trim``); a second cut in one step runs the first one now."""
    frame_ms = m.encoder.frame_ms
    if s.pending_trim is not None:
        trim_now(m, s, s.take_pending_trim())
    n = s.window_frames
    drop = max(0, min(int((cut_ms - s.window_start_ms) // frame_ms), n))
    if drop == 0:
        return
    if defer:
        s.pending_trim = n - drop
    else:
        trim_now(m, s, n - drop)
    s.window_start_ms += drop * frame_ms
    # words that begin before the cut leave the window for the prompt; later ones stay forced
    gone = [w for w in s.window_words if w.start_ms < s.window_start_ms]
    for w in gone:
        s.prompt.extend(w.tokens)
    s.window_words = s.window_words[len(gone) :]
    cap_prompt(m, s)


def cap_prompt(m: "WhisperStreamingModel", s: WhisperStream) -> None:
    """Keep the last ``max_prompt_tokens``..2x of the prompt, dropping the older ones in one go:
    the prompt then starts at the same token for many trims, so the decoder keeps its cached rows
    and re-runs only what moved into it (a prompt that slid by a few tokens per trim re-ran all of
    its tokens each time)."""
    cap = m.settings.max_prompt_tokens
    if cap and len(s.prompt) > 2 * cap:
        s.prompt = s.prompt[-cap:]


def new_segment(m: "WhisperStreamingModel", s: WhisperStream) -> None:
    """After the step that ended a segment (``Finalize``: all its words committed as at the end of
    input), the whole window goes: its committed words move to the prompt (or, without
    ``Finalize.context``, the prompt is emptied), and the audio from here on starts a fresh window
    as a new stream's would (features, encoder state and policy anew; the decoder's cache keeps
    its buffers, its window emptied), at the media time reached."""
    if s.segment_context():
        for w in s.window_words:
            s.prompt.extend(w.tokens)
        cap_prompt(m, s)
    else:
        s.prompt = []
    s.window_words = []
    s.features = m.feature_factory()
    s.encoder_state = m.encoder.create_state()
    m.decoder.update_cross(s.cache, torch.zeros(0, 0), 0)
    note_encoder(m, s)
    s.window_start_ms = s.consumed_ms
    s.flushed = s.window_changed = False
    s.heard_from_ms = s.heard_until_ms = None
    s.pending_trim = None
    s.skipped_decodes = 0
    s.policy.reset()
    s.begin_segment()
    s.stats["segments"] += 1
