"""Model-wide settings of Whisper streaming (``WhisperStreamSettings``): units in the names,
``None`` disables a limit, ``check()`` names the setting and the numbers in its error."""

from __future__ import annotations

from dataclasses import dataclass

from streamrt.decoding import BeamSettings
from streamrt.errors import ConfigError

ALIGNMENT_METHODS = ("argmax", "dtw")
PAD_MODES = ("silence", "none")


@dataclass(frozen=True)
class WhisperStreamSettings:
    """Model-wide settings (units in the names; ``None`` disables a limit).

    chunk_ms: audio one step consumes (the decision granularity).
    max_hypothesis_tokens: most tokens decoded after the committed prefix in one step.
    max_tokens_per_s: also cap the tail at this many tokens per second of uncommitted audio (+8),
        so a looping decoder stops early; None: only max_hypothesis_tokens.
    trim_after_s: trim the window at the last committed word once it is longer than this.
    trim_min_drop: a trim at the last committed word happens only when it drops at least this
        fraction of the window: a trim re-encodes what it keeps, so cutting a little off a long
        window (a policy that has not committed for long) costs much and frees little; such a window
        is cut by a stall reset or at ``max_window_s`` instead.
    trim_keep_words: committed words that such a trim keeps in the window, as forced prefix with
        their audio: the decoder then hears the uncommitted audio after speech it has the text of,
        not from an abrupt start. Cut at the last word's end, a window that began at "the present
        period" (two_cities, after "...so far like") was decoded as "the season of death. It was the
        first time", and without the prompt as "period, that ..."; with "like" kept it was right
        (a 4 s decode, the ladder's chunk x4 + policy stride 2 rung, which lost 6-11 words so).
        0 (default): cut at the end of the last committed word. The AlignAtt presets keep 1: a
        policy that commits from one decode commits such a misheard start at once, while
        LocalAgreement waits for a second decode to agree.
    stall_reset_s: when a step writes nothing although this much audio (s) follows the last
        committed word, cut the window at that word (its words go from the forced prefix to the
        prompt, and the decoder reads the unconfirmed audio afresh); with no committed word in the
        window (a pause), keep only its last half of this. After a misheard forced word Whisper
        ends the transcript at once or loops on a word that keeps "listening", and the policy would
        wait until max_window_s. None: never.
    max_trims_per_step: at most this many of a batch's streams trim in one step (stalled streams
        first, then the longest windows; the others a step later); the step's trims then run as
        one batched re-encode (``encoder.trim_batch``). A trim re-encodes the kept audio and
        re-runs the decoder's prefix (~90 ms for tiny.en), so streams that started together would
        otherwise all pay it in the same step. One per step (two per second at 500 ms steps) held
        16 AlignAtt streams in real time where two per step held 12 (docs/benchmarks.md). None: no
        limit.
    max_loop_iterations: a stream takes part in at most this many iterations of a step's batched
        token loop; one still decoding then (catching up after a stall, most often alone in the
        batch by then) goes on next step, its tokens so far checked as the next decode's draft in
        one parallel forward. Each iteration reads the whole vocabulary projection, however few
        streams it carries. Not at the end of the stream, whose last decode runs to the end. None:
        no limit.
    max_window_s: hard limit; past it the window is cut to its last ``forced_keep_s`` seconds,
        committing the hypothesis words before the cut (the encoder's 30 s is the ceiling).
    history_min_cut_s: with a history-selecting policy (StreamAtt), audio is dropped only when the
        selection frees at least this much (each cut re-bases the encoder window).
    max_prompt_tokens: committed tokens from before the window given as the decoder's prompt: the
        last 1-2x this many; past 2x the older ones are dropped in one go, so the prompt's start
        stays put across trims and the decoder keeps its cached rows (0: no prompt).
    reuse_prefix_kv: keep the committed prefix's self-attention rows across steps even though the
        window changed (approximate: they attended to an earlier window). Default False: the forced
        prefix is re-run in one parallel forward each step (exact; on the test set tiny.en
        LocalAgreement-2, re-encode, 500 ms: 1.65 % WER vs 2.47 % with reuse, same latency).
    stop_at_policy: decode only up to the first token where the policy stops writing (AlignAtt,
        EDAtt, StreamAtt: ``Policy.stop_rule``), so a step costs what it can commit plus one token
        (at 32 streams ~7 instead of ~25 loop iterations per step) and the partial text ends there.
        The policy decides on the same tokens, but the loop guards (compression ratio, repeated
        spans) no longer see a tail that loops after the stop, so hallucinated words they would
        have hidden get committed: tiny.en AlignAtt on data/testset.tsv, 500 ms, 6.58 -> 8.23 %
        WER over re-encode, 10.7 -> 13.2 % over block-causal. False (default): the whole tail.
    alignment: "argmax" (monotonic argmax) or "dtw" for token timestamps.
    seam_max_words: leading hypothesis words compared with the committed tail for de-duplication.
    max_compression_ratio: a hypothesis more repetitive than this (zlib ratio) is not shown to the
        policy (Whisper's loop heuristic); None disables.
    repetition_max_ngram/_repeats: stop decoding when a 1..n-token n-gram repeats more than this.
    repeated_span_words: cut the hypothesis where a run of this many words repeats one already in
        the window (sentence-level loops); None disables.
    pad_cross: "silence": cross-attention sees 30 s (the window, then the encoder's output for
        silence), as Whisper was trained; "none": only the window's frames.
    pad_mel_value: the normalised log-mel value of that silence (the floor of Whisper's padding).
    beam_size: hypotheses the decoder keeps per stream when it decodes the uncommitted tail (beam
        search, batched across streams: ``streamrt.decoding.beam_search``); the policy sees the best
        one, with its tokens' alignment. 1 (default): greedy, with the previous hypothesis verified
        as a draft. Under ``max_loop_iterations`` a beam decode runs at most as many iterations as
        the last hypothesis had tokens plus that limit (beam search has no draft to verify in one
        forward), so it costs more per step than greedy; with ``stop_at_policy`` a stream stops at
        the first token of its best live beam where the policy stops writing.
    beam_patience: a beam search ends once round(beam_size * beam_patience) hypotheses have ended
        (Whisper's ``patience``).
    length_penalty: ranks the ended hypotheses: None divides their sum of log-probabilities by their
        length in tokens (Whisper's default), a value a >= 0 by ((5 + length) / 6) ** a.
    """

    chunk_ms: int = 1000
    max_hypothesis_tokens: int = 128
    max_tokens_per_s: float | None = 12.0
    trim_after_s: float = 15.0
    trim_min_drop: float = 0.5
    trim_keep_words: int = 0
    stall_reset_s: float | None = 4.0
    max_trims_per_step: int | None = 1
    max_loop_iterations: int | None = None
    max_window_s: float = 28.0
    forced_keep_s: float = 10.0
    history_min_cut_s: float = 1.0
    max_prompt_tokens: int = 64
    reuse_prefix_kv: bool = False
    stop_at_policy: bool = False
    alignment: str = "argmax"
    seam_max_words: int = 5
    max_compression_ratio: float | None = 2.4
    repetition_max_ngram: int = 12
    repetition_max_repeats: int = 3
    repeated_span_words: int | None = 5
    pad_cross: str = "silence"
    pad_mel_value: float = -0.8
    beam_size: int = 1
    beam_patience: float = 1.0
    length_penalty: float | None = None

    def beam(self) -> BeamSettings | None:
        """The decoder's beam search settings; None: greedy (beam_size 1)."""
        if self.beam_size == 1:
            return None
        return BeamSettings(self.beam_size, self.beam_patience, self.length_penalty)

    def check(self) -> None:
        if self.pad_cross not in PAD_MODES:
            raise ConfigError(f"pad_cross must be one of {PAD_MODES}, got {self.pad_cross!r}")
        if self.chunk_ms <= 0:
            raise ConfigError(f"chunk_ms must be > 0 ms, got {self.chunk_ms}")
        if self.alignment not in ALIGNMENT_METHODS:
            raise ConfigError(f"alignment must be one of {ALIGNMENT_METHODS}, got {self.alignment!r}")
        if not 0 < self.forced_keep_s < self.max_window_s:
            raise ConfigError(
                f"forced_keep_s ({self.forced_keep_s} s) must lie in (0, max_window_s={self.max_window_s} s)"
            )
        if self.trim_after_s > self.max_window_s:
            raise ConfigError(f"trim_after_s ({self.trim_after_s} s) exceeds max_window_s ({self.max_window_s} s)")
        if not 0.0 <= self.trim_min_drop <= 1.0:
            raise ConfigError(f"trim_min_drop must be a fraction in [0, 1] of the window, got {self.trim_min_drop}")
        if isinstance(self.trim_keep_words, bool) or not isinstance(self.trim_keep_words, int) or self.trim_keep_words < 0:
            raise ConfigError(f"trim_keep_words must be an integer >= 0 (words), got {self.trim_keep_words!r}")
        if self.stall_reset_s is not None and self.stall_reset_s <= 0:
            raise ConfigError(f"stall_reset_s must be > 0 s or None, got {self.stall_reset_s}")
        if self.max_trims_per_step is not None and self.max_trims_per_step < 1:
            raise ConfigError(f"max_trims_per_step must be >= 1 or None, got {self.max_trims_per_step}")
        if self.max_loop_iterations is not None and self.max_loop_iterations < 1:
            raise ConfigError(f"max_loop_iterations must be >= 1 or None, got {self.max_loop_iterations}")
        if self.max_hypothesis_tokens < 1:
            raise ConfigError(f"max_hypothesis_tokens must be >= 1, got {self.max_hypothesis_tokens}")
        if isinstance(self.beam_size, bool) or not isinstance(self.beam_size, int) or self.beam_size < 1:
            raise ConfigError(f"beam_size must be an integer >= 1 (1: greedy), got {self.beam_size!r}")
        if not self.beam_patience > 0:
            raise ConfigError(f"beam_patience must be > 0, got {self.beam_patience}")
        if self.length_penalty is not None and not self.length_penalty >= 0:
            raise ConfigError(f"length_penalty must be >= 0 or None (divide by the length), got {self.length_penalty}")
