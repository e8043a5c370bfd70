"""Per-session state of Whisper streaming (``WhisperStream``), driven by ``WhisperStreamingModel.step``.

A step is: ``take_features`` (consume up to one chunk of audio, make log-mel frames, force a trim if
the window would pass its limit), the model's batched encoder call, ``accept_encoder_output``
(extend the cross-attention cache), then the model's batched decode and ``commit_from`` (build the
``PolicyView``, apply the policy, commit whole words, trim the window at a committed word).
Committed words are never retracted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from policies.base import HistorySelection, HypToken, Policy, PolicyView, Read, Write, word_spans
from streamrt.decoding import DecodeRequest, DecodeResult, compression_ratio, token_times
from streamrt.engine import SampleCounts, StepResult, UnitDraft

if TYPE_CHECKING:
    from streamrt.tasks.whisper_stream import WhisperStreamingModel


@dataclass
class _Word:
    text: str
    tokens: list[int]
    start_ms: float
    end_ms: float


class WhisperStream(SampleCounts):
    """One session's features, encoder state, decoder caches, policy and committed words."""

    def __init__(self, model: "WhisperStreamingModel", policy: Policy, sot: list[int], *, task: str, language):
        self.model = model
        self.policy = policy
        self.sot = sot
        self.task = task
        self.language = language
        self.features = model.feature_factory()
        self.encoder_state = model.encoder.create_state()
        self.cache = model.decoder.create_cache()
        self._chunks: list[np.ndarray] = []
        self._received = 0  # samples
        self._consumed = 0
        self._finished = False
        self._flushed = False
        self._done = False
        self._window_changed = False
        self.window_start_ms = 0.0
        self._window_words: list[_Word] = []  # committed words inside the window (forced prefix)
        self._prompt: list[int] = []  # committed tokens before the window
        self._committed_texts: list[str] = []
        self._committed_starts: list[float] = []  # media ms, parallel to _committed_texts
        self._out: list[UnitDraft] = []
        self._partial: str | None = None
        self.skipped_decodes = 0  # steps without a decode since the last one (policy stride)
        # media ms of the first and the last token of the last decode (None: it heard nothing)
        self.heard_from_ms: float | None = None
        self.heard_until_ms: float | None = None
        # frames to keep in a trim that commit_from decided and the model runs for the whole batch
        # at the end of the step (WhisperStreamingModel._run_trims); None: no trim pending
        self._pending_trim: int | None = None
        self._defer_trims = False
        self.stats = {"steps": 0, "trims": 0, "forced_trims": 0, "repetition_stops": 0, "seam_drops": 0,
                      "stall_resets": 0}

    # ---- ModelStream ---------------------------------------------------------------------------
    def accept_audio(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if len(x):
            self._chunks.append(x)
            self._received += len(x)

    def is_ready(self) -> bool:
        if self._done or self.cancelled:
            return False
        chunk = self._chunk_samples()
        return self._received - self._consumed >= chunk or self._finished

    def is_done(self) -> bool:
        return self._done or self.cancelled

    def pop_result(self) -> StepResult:
        out = StepResult(self._out, self._partial)
        self._out, self._partial = [], None
        return out

    # ---- step parts ----------------------------------------------------------------------------
    def take_features(self) -> tuple[torch.Tensor, bool]:
        """Consume up to one chunk; return its new mel frames and whether this is the stream's last
        encoder step (the one that takes the last received sample after the end of input)."""
        # a backlog (a client that sent far faster than real time, a stream that fell behind under
        # load) is worked off one chunk per step, after the end of input too: the whole of it in one
        # step went past the encoder's 1500 frames, and a last decode over seconds of new audio
        # (chunk x4, 10 s backlog) hallucinated two_cities' last ~25 words
        left = self._received - self._consumed
        taken = self._pop_samples(min(self._chunk_samples(), left))
        self._consumed += len(taken)
        mel = self.features.accept(taken)
        last = False
        if self.is_final_step() and not self._flushed:
            self._flushed = last = True
            tail = self.features.flush()
            mel = torch.cat([mel, tail], dim=-1) if tail.shape[-1] else mel
        enc = self.model.encoder
        new_frames = (mel.shape[-1] + 1) // 2
        limit_frames = self._max_window_frames()
        if self._window_frames() + new_frames > limit_frames:
            keep = int(self.model.settings.forced_keep_s * 1000.0 / enc.frame_ms)
            self._forced_trim(max(0, min(keep, limit_frames - new_frames)))
        return mel, last

    def _pop_samples(self, n: int) -> np.ndarray:
        if n <= 0:
            return np.zeros(0, np.float32)
        buf = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        taken, rest = buf[:n], buf[n:]
        self._chunks = [rest] if len(rest) else []
        return taken

    def accept_encoder_output(self, out) -> None:
        self.model.decoder.update_cross(*self.cross_update(out))

    def cross_update(self, out):
        """Note the encoder's output; return the decoder cache update it needs
        ((cache, frames, start) for ``update_cross``, batched over streams by the model)."""
        if out.frames.shape[0] or out.start < self.cache.n_valid:
            self._window_changed = True
        return self.cache, out.frames, out.start

    def _chunk_samples(self) -> int:
        return self.model.settings.chunk_ms * self.model.sample_rate // 1000

    def is_final_step(self) -> bool:
        """True once every received sample is consumed after end of input (the committing step)."""
        return self._finished and self._consumed >= self._received

    def needs_decode(self) -> bool:
        """True when the window changed since the last decode, or at end of stream. A cached
        encoder emits frames per block, so some steps add none: decoding the same window again
        would give the same hypothesis, which LocalAgreement must not count as a second vote."""
        return self._window_changed or self.is_final_step()

    def commit_from(self, res: DecodeResult) -> None:
        """Turn a decode of ``decode_request()`` into the hypothesis, ask the policy, commit, and
        decide a trim (its re-encode is left to the model: ``take_pending_trim``)."""
        self._defer_trims = True
        try:
            self._commit_from(res)
        finally:
            self._defer_trims = False

    def take_pending_trim(self) -> int | None:
        """The frames to keep of a trim ``commit_from`` decided (None: none); the caller runs it
        (``encoder.trim_batch``) and gives the decoder the new window before the next step."""
        keep, self._pending_trim = self._pending_trim, None
        return keep

    def _commit_from(self, res: DecodeResult) -> None:
        m = self.model
        s = m.settings
        self.stats["steps"] += 1
        self._window_changed = False
        final = self.is_final_step()
        _, hyp_tokens = self._hypothesis(res)
        if final:
            hyp_tokens = self._final_afresh(hyp_tokens)
        view = PolicyView(
            source_ms=self.consumed_ms,
            source_finished=final,
            window_start_ms=self.window_start_ms,
            frame_ms=m.encoder.frame_ms,
            n_frames=self._window_frames(),
            committed=tuple(self._committed_texts),
            hypothesis=tuple(hyp_tokens),
            committed_start_ms=tuple(self._committed_starts),
        )
        action = Write(len(hyp_tokens), final=True) if final else self.policy.decide(view)
        count = 0
        if isinstance(action, Write):
            count = min(max(action.count, 0), len(hyp_tokens))
        spans = word_spans([t.text for t in hyp_tokens])
        if not final:
            # whole words only, and the hypothesis' last word may still grow
            ends = [b for _, b in spans if b <= count and b < len(hyp_tokens)]
            count = ends[-1] if ends else 0
        self._commit(hyp_tokens, spans, count)
        rest = hyp_tokens[count:]
        self._partial = self.model.bundle.tokenizer.decode([t.id for t in rest]).strip()
        if final:
            self._done = True
            self._partial = ""
            return
        after = replace(view, committed=tuple(self._committed_texts), hypothesis=tuple(rest),
                        committed_start_ms=tuple(self._committed_starts))
        selection = self.policy.select_history(after)
        if selection is not None:
            self._apply_history(selection)
        elif count == 0 and self.stalled() and self._stall_reset_possible() and m.take_trim():
            self._reset_stall()
        elif (self._window_frames() * m.encoder.frame_ms > s.trim_after_s * 1000.0
              and self._committed_cut_frames(s.trim_keep_words) >= max(1.0, s.trim_min_drop * self._window_frames())
              and m.take_trim()):
            self._trim_at_committed(s.trim_keep_words)

    def _apply_history(self, sel: HistorySelection) -> None:
        """A history-selecting policy's choice (StreamAtt): drop audio before ``audio_from_ms`` (when
        that frees at least ``history_min_cut_s``) and keep ``text_words`` committed words of text:
        the words whose audio stays in the window are forced, older ones go in the prompt."""
        if sel.audio_from_ms - self.window_start_ms >= self.model.settings.history_min_cut_s * 1000.0:
            self._cut_window(sel.audio_from_ms)
            self.stats["trims"] += 1
        in_window = sum(1 for w in self._window_words if w.text)
        keep = max(0, sel.text_words - in_window)
        older = self._committed_texts[: len(self._committed_texts) - in_window]
        text = " ".join(older[len(older) - keep :]) if keep else ""
        self._prompt = self.model.bundle.tokenizer.encode(" " + text) if text else []

    # ---- decoding ------------------------------------------------------------------------------
    def _window_frames(self) -> int:
        return self.model.encoder.window_frames(self.encoder_state)

    def _window_end_ms(self) -> float:
        """Media time of the window's end."""
        return self.window_start_ms + self._window_frames() * self.model.encoder.frame_ms

    def _max_window_frames(self) -> int:
        """Encoder frames the window may hold (``max_window_s``)."""
        return int(self.model.max_window_s * 1000.0 / self.model.encoder.frame_ms)

    def encoder_window_frames(self) -> int:
        """Encoder frames in the window now."""
        return self._window_frames()

    def _prefix(self) -> list[int]:
        s = self.model.settings
        prefix: list[int] = []
        if s.max_prompt_tokens and self._prompt:
            # the last max_prompt_tokens..2x committed tokens (see _cut_window)
            prefix = [self.model.sot_prev] + self._prompt[-2 * s.max_prompt_tokens :]
        prefix += self.sot
        for w in self._window_words:
            prefix += w.tokens
        return prefix

    def decode_request(self, *, whole: bool = False) -> DecodeRequest:
        """What to decode this step: the forced prefix, the tail's token cap, and where the policy
        lets decoding stop (``Policy.stop_rule``; not at the end of the stream, nor when ``whole``)."""
        m, s = self.model, self.model.settings
        frame_ms = m.encoder.frame_ms
        n_frames = self._window_frames()
        committed_end = self._window_words[-1].end_ms if self._window_words else self.window_start_ms
        uncommitted_s = max(0.0, (self.window_start_ms + n_frames * frame_ms - committed_end) / 1000.0)
        cap = s.max_hypothesis_tokens
        if s.max_tokens_per_s is not None:
            cap = min(cap, int(uncommitted_s * s.max_tokens_per_s) + 8)
        stop = None
        partial = not whole and not self.is_final_step()  # the last decode runs to the end
        if s.stop_at_policy and partial:
            stop = self.policy.stop_rule(n_frames)
        iterations = m.loop_iterations() if partial else None
        return DecodeRequest(self.cache, self._prefix(), cap, s.reuse_prefix_kv, m.guard, stop, iterations, s.beam())

    def _decode(self) -> tuple[list[int], list[HypToken]]:
        """The whole hypothesis now, loops cut but never blanked (a forced trim commits every word
        before its cut: an empty hypothesis there would drop the words of the audio it cuts)."""
        return self._hypothesis(self.model.decoder.greedy_many([self.decode_request(whole=True)])[0],
                                blank_loops=False)

    def _hypothesis(self, res: DecodeResult, *, blank_loops: bool = True) -> tuple[list[int], list[HypToken]]:
        """The decode as the policy sees it. ``blank_loops``: hide a hypothesis more repetitive than
        ``max_compression_ratio`` (a loop) from the policy; back-to-back repeated spans are cut
        either way. Notes where the decoder heard its first and last token (``heard_from_ms``,
        ``heard_until_ms``), guards or not, so a stall reset never cuts audio that holds words."""
        m, s = self.model, self.model.settings
        frame_ms = m.encoder.frame_ms
        n_frames = self._window_frames()
        committed_end = self._window_words[-1].end_ms if self._window_words else self.window_start_ms
        if res.stopped_by == "repetition":
            self.stats["repetition_stops"] += 1
        ids = list(res.tokens)
        texts = [m.bundle.tokenizer.token_text(t) for t in ids]
        att = res.attention
        final = self.is_final_step()
        first_frame = max(0, int((committed_end - self.window_start_ms) // frame_ms))
        self.heard_from_ms = self.heard_until_ms = None
        if ids:
            heard, _ = token_times(att, window_start_ms=self.window_start_ms, frame_ms=frame_ms,
                                   first_frame=first_frame, last_frame=n_frames, method=s.alignment)
            self.heard_from_ms, self.heard_until_ms = float(heard[0]), float(heard[-1])
        if blank_loops and s.max_compression_ratio is not None and not final:
            text = "".join(texts)
            if len(text) > 40 and compression_ratio(text) > s.max_compression_ratio:
                self.stats["repetition_stops"] += 1
                ids, texts, att = [], [], att[:0]
        toks = self._tokens(ids, texts, att, res.logprobs, first_frame)
        cut = self._repeated_span(toks)
        if cut is not None:
            self.stats["repetition_stops"] += 1
            ids = ids[:cut]
            toks = self._tokens(ids, texts[:cut], att[:cut], res.logprobs, first_frame)
        dropped = self._seam_duplicates(toks)
        if dropped:
            self.stats["seam_drops"] += 1
            skipped = toks[:dropped]
            # heard again across the seam: forced silently, never emitted twice
            self._window_words.append(_Word("", [t.id for t in skipped], skipped[0].start_ms, skipped[-1].end_ms))
            toks, ids = toks[dropped:], ids[dropped:]
        return ids, toks

    def _tokens(self, ids: list[int], texts: list[str], att: np.ndarray, logprobs, first_frame: int) -> list[HypToken]:
        """The decoded tokens with their alignment (``token_times``) and attention rows."""
        starts, ends = token_times(
            att, window_start_ms=self.window_start_ms, frame_ms=self.model.encoder.frame_ms,
            first_frame=first_frame, last_frame=self._window_frames(), method=self.model.settings.alignment,
        )
        return [
            HypToken(t, x, float(a), float(b), att[i], lp)
            for i, (t, x, a, b, lp) in enumerate(zip(ids, texts, starts, ends, logprobs))
        ]

    def _repeated_span(self, toks: list[HypToken]) -> int | None:
        """Token index where the hypothesis starts repeating, back to back, the run of words just
        before it (hypothesis words or committed words in the window), else None:

        - a run of L >= ``repeated_span_words`` words whatever it attends to (Whisper's sentence
          loops: "X. X. X."); repeats that are not adjacent ("it was the age of wisdom, it was the
          age of foolishness") are speech, not loops, and are kept;
        - a shorter run when its second copy re-reads the first one's audio: no word of it is heard
          (its first token's attention peak) later than the first copy's last word starts. At the
          window's end Whisper repeats the phrase it has just transcribed that way ("Fail better.
          Fail better." on beckett.wav, the repeat attending back to the same 0.4 s); a speaker's
          own repeats ("no, no") are heard one after the other, and are kept."""
        n = self.model.settings.repeated_span_words
        if not n or not toks:
            return None
        spans = word_spans([t.text for t in toks])
        frame_ms = self.model.encoder.frame_ms
        # per word: its normalised text, where it starts (monotonic alignment) and where its first
        # token's attention peaks (a committed word: where it starts)
        words = [(_norm(w.text), w.start_ms, w.start_ms) for w in self._window_words if w.text]
        first_hyp = len(words)
        for a, b in spans:
            tok = toks[a]
            peak = tok.start_ms
            if tok.attention is not None and len(tok.attention):
                peak = self.window_start_ms + int(np.argmax(tok.attention)) * frame_ms
            words.append((_norm("".join(t.text for t in toks[a:b])), tok.start_ms, peak))
        texts = [w[0] for w in words]
        for i in range(max(first_hyp, 1), len(words)):
            for length in range(1, min(i, len(words) - i) + 1):
                if texts[i : i + length] != texts[i - length : i]:
                    continue
                first_copy_ends = words[i - 1][1]  # where its last word starts
                rereads = all(texts[i : i + length]) and all(w[2] <= first_copy_ends for w in words[i : i + length])
                if length >= n or rereads:
                    return spans[i - first_hyp][0]
        return None

    def _seam_duplicates(self, toks: list[HypToken]) -> int:
        """Tokens to drop: the first k<=seam_max_words hypothesis words equal the committed tail
        (whisper_streaming's HypothesisBuffer.insert), checked only just after a trim."""
        if self._window_words or not self._committed_texts or not toks:
            return 0
        spans = word_spans([t.text for t in toks])
        words = [_norm("".join(t.text for t in toks[a:b])) for a, b in spans]
        tail = [_norm(w) for w in self._committed_texts[-self.model.settings.seam_max_words :]]
        for k in range(min(len(tail), len(words)), 0, -1):
            if words[:k] == tail[-k:] and all(words[:k]):
                return spans[k - 1][1]
        return 0

    # ---- committing and trimming -----------------------------------------------------------------
    def _commit(self, toks: list[HypToken], spans: list[tuple[int, int]], count: int) -> None:
        for a, b in spans:
            if b > count:
                break
            piece = toks[a:b]
            # decode the ids together: a character split over tokens comes out whole
            text = self.model.bundle.tokenizer.decode([t.id for t in piece]).strip()
            w = _Word(text, [t.id for t in piece], piece[0].start_ms, piece[-1].end_ms)
            self._window_words.append(w)
            if text:
                self._committed_texts.append(text)
                self._committed_starts.append(w.start_ms)
                end = min(w.end_ms, self.consumed_ms)
                self._out.append(UnitDraft(text, min(w.start_ms, end), end, self.consumed_ms))

    def stalled(self) -> bool:
        """Nothing was written although ``stall_reset_s`` of audio follow the last committed word:
        a pause, or a decoder derailed by a wrong forced prefix or prompt (after a misheard word
        Whisper says one more word at the window's start and ends, decode after decode, or loops
        on a word that keeps "listening").

        While the last decode follows the audio to the window's end (``_follows_audio``), the limit
        grows with the ladder's longer chunks, and with its policy stride for a policy that needs
        several decodes to write a word (``model.stall_stretch(policy.decodes_to_commit())``):
        LocalAgreement-2 needs two decodes to agree on a word, so at 4 s steps a 4 s limit would
        call every first sight of a word a stall. A decode that stopped short (a pause, a derail) is
        a stall after ``stall_reset_s`` at any step length."""
        limit = self.model.settings.stall_reset_s
        if limit is None:
            return False
        if self._follows_audio():
            limit *= self.model.stall_stretch(self.policy.decodes_to_commit())
        end_ms = self._window_end_ms()
        last = self._window_words[-1].end_ms if self._window_words else self.window_start_ms
        return end_ms - last >= limit * 1000.0

    def _follows_audio(self) -> bool:
        """The last decode heard a token in the window's last ``stall_reset_s``: it transcribes the
        audio to its end (its words not written yet are the policy's to commit), rather than
        hearing a pause or stopping early, derailed."""
        if self.heard_until_ms is None or self.model.settings.stall_reset_s is None:
            return False
        stall_ms = 1000.0 * self.model.settings.stall_reset_s
        end_ms = self._window_end_ms()
        return self.heard_until_ms >= end_ms - stall_ms

    def _reset_stall(self) -> None:
        """Get a stalled stream going again without dropping a word it could still transcribe:

        - committed words in the window: cut the window at the last one, so they leave the forced
          prefix for the prompt and the decoder reads the unconfirmed audio afresh;
        - none, and the last decode derailed (``_derailed``): drop the context that derails it
          (``_drop_context``) and decode the same audio afresh;
        - none, and nothing to drop: cut the audio in which the decoder heard nothing
          (``_pause_cut_ms``)."""
        if self._committed_cut_frames():
            self._trim_at_committed()
        elif self._context_derails():
            self._drop_context()
        else:
            self._cut_window(self._pause_cut_ms())
        self.stats["stall_resets"] += 1

    def _stall_reset_possible(self) -> bool:
        """Whether ``_reset_stall`` would change anything now (a cut that drops frames, or context
        to drop)."""
        if self._committed_cut_frames() or self._context_derails():
            return True
        return int((self._pause_cut_ms() - self.window_start_ms) // self.model.encoder.frame_ms) > 0

    def _derailed(self) -> bool:
        """The last decode heard nothing, or stopped, ``stall_reset_s`` or more before the window's
        end: a pause, or a decoder derailed by its context. After a trim the prompt ("...trees
        along the northern") makes Whisper say one word at the window's start ("room.") and end,
        or end at once, decode after decode, over seconds of speech."""
        return self.model.settings.stall_reset_s is not None and not self._follows_audio()

    def _has_context(self) -> bool:
        return bool(self._prompt or self._window_words)

    def _context_derails(self) -> bool:
        """The last decode derailed, with context to drop and no committed word with audio in the
        window to cut at: decoding the window afresh (``_drop_context``) is the remedy."""
        return self._derailed() and self._has_context() and not self._committed_cut_frames()

    def _drop_context(self) -> None:
        """Decode the window afresh: without the prompt (committed text before the window) and
        without the committed words left in it (none holds audio there, or the window would have
        been cut at them; a word aligned to no frame stays at a cut). They stay committed; one the
        decoder hears again is dropped as a seam duplicate."""
        self._prompt, self._window_words = [], []

    def _final_afresh(self, toks: list[HypToken]) -> list[HypToken]:
        """The stream's last decode, ``toks``, ends ``stall_reset_s`` or more before its audio does,
        with context that may have derailed it and no committed word with audio in the window:
        decode the window once more without that context (``_drop_context``) and keep that decode
        unless it heard less far (the first one is suspect), so a derail at the end does not lose
        the words after it (after "...received for good or for": "good or for" again, and the end
        lost). Returns the tokens to commit."""
        if not self._context_derails():
            return toks
        before = (self._prompt, self._window_words, self.heard_from_ms, self.heard_until_ms)
        self._drop_context()
        _, fresh = self._decode()
        if fresh and (before[3] is None or (self.heard_until_ms or 0.0) >= before[3]):
            self.stats["stall_resets"] += 1
            return fresh
        self._prompt, self._window_words, self.heard_from_ms, self.heard_until_ms = before
        return toks

    def _pause_cut_ms(self) -> float:
        """Where a stall reset cuts a window without a committed word: its last ``stall_reset_s`` / 2
        stays, and so does everything from the first token of the last decode on. Only audio in
        which the decoder heard nothing goes: words not committed yet (a policy that needs more
        decodes, the last word before a pause, a loop the guards hid) are the policy's to commit
        later, or the forced trim's at ``max_window_s``."""
        end_ms = self._window_end_ms()
        cut_ms = end_ms - 500.0 * self.model.settings.stall_reset_s
        if self.heard_from_ms is not None:
            cut_ms = min(cut_ms, self.heard_from_ms)
        return cut_ms

    def _trim_now(self, keep_frames: int) -> None:
        out = self.model.encoder.trim(self.encoder_state, keep_frames)
        self.model.decoder.update_cross(self.cache, out.frames, out.start)

    def _committed_cut_ms(self, keep_words: int = 0) -> float:
        """Where a trim at the committed words cuts: the end of the last one, or with ``keep_words``
        the start of the ``keep_words``-th last one, so that many stay in the window as forced
        prefix (the window's start while fewer are in it)."""
        words = self._window_words
        if not keep_words:
            return words[-1].end_ms if words else self.window_start_ms
        return words[-keep_words].start_ms if len(words) >= keep_words else self.window_start_ms

    def _committed_cut_frames(self, keep_words: int = 0) -> int:
        """Frames a trim at the committed words (``_committed_cut_ms``) would drop (0: nothing
        committed in the window since the last trim, e.g. a policy that keeps reading)."""
        frame_ms = self.model.encoder.frame_ms
        return max(0, int((self._committed_cut_ms(keep_words) - self.window_start_ms) // frame_ms))

    def _trim_at_committed(self, keep_words: int = 0) -> None:
        """Drop the window's audio before the end of the last committed word, or before the start
        of the ``keep_words``-th last one (``trim_keep_words``; a stall reset keeps none: a misheard
        forced word is what derails the decoder then)."""
        if not self._committed_cut_frames(keep_words):
            return
        self._cut_window(self._committed_cut_ms(keep_words))
        self.stats["trims"] += 1

    def _forced_trim(self, keep_frames: int) -> None:
        """The window would pass max_window_s with this step's frames: cut it to its last
        ``keep_frames`` at most, without dropping a word. Unless committed words already reach
        the cut, a whole decode of the window (loops cut, never blanked; decoded again without its
        context if derailed) is committed up to its last word that starts before the cut; the cut
        then moves to the end of the last committed word where that lies later, so all audio it
        drops is committed text."""
        cut_ms = self._window_end_ms() - keep_frames * self.model.encoder.frame_ms
        if not (self._window_words and self._window_words[-1].end_ms >= cut_ms):
            toks = []
            if self.cache.n_frames:
                _, toks = self._decode()
                if self._context_derails():
                    self._drop_context()  # hear the window afresh before cutting it
                    _, toks = self._decode()
            spans = word_spans([t.text for t in toks])
            count = 0
            for a, b in spans:
                if toks[a].start_ms < cut_ms:
                    count = b
            self._commit(toks, spans, count)
        if self._window_words:
            cut_ms = max(cut_ms, self._window_words[-1].end_ms)
        self._cut_window(cut_ms)
        self.stats["forced_trims"] += 1

    def _cut_window(self, cut_ms: float) -> None:
        enc = self.model.encoder
        if self._pending_trim is not None:  # a second cut in one step: run the first one now
            self._trim_now(self.take_pending_trim())
        n = self._window_frames()
        drop = int((cut_ms - self.window_start_ms) // enc.frame_ms)
        drop = max(0, min(drop, n))
        if drop == 0:
            return
        if self._defer_trims:
            self._pending_trim = n - drop
        else:
            self._trim_now(n - drop)
        self.window_start_ms += drop * enc.frame_ms
        # words that begin before the cut leave the window for the prompt; later ones stay forced
        gone = [w for w in self._window_words if w.start_ms < self.window_start_ms]
        for w in gone:
            self._prompt.extend(w.tokens)
        self._window_words = self._window_words[len(gone) :]
        cap = self.model.settings.max_prompt_tokens
        if cap and len(self._prompt) > 2 * cap:
            # keep the last cap..2*cap tokens, dropping the older ones in one go: the prompt then
            # starts at the same token for many trims, so the decoder keeps its cached rows and
            # re-runs only what moved into it (a prompt that slid by a few tokens per trim re-ran
            # all of its tokens each time)
            self._prompt = self._prompt[-cap:]


_PUNCT = re.compile(r"[^\w']+")


def _norm(word: str) -> str:
    return _PUNCT.sub("", word.lower())
