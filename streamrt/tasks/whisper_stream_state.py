"""Per-session state of Whisper streaming (``WhisperStream``): plain data that the step functions
(``whisper_step``, ``whisper_commit``, ``whisper_window``, ``whisper_hypothesis``) read and write.

The stream implements the session side of ``streamrt.engine.AudioStream`` (audio in, results out,
end of input, cancel) and never calls into the model: it reads only the two things its
``StreamHost`` declares, the sample rate and the audio one step takes now. Committed words are
never retracted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from policies.base import Policy
from streamrt.engine import SampleCounts, StepResult, UnitDraft, Urgency
from streamrt.types import AudioChunk, Finalize, StepPending


STEP_PENDING_PRIORITY = 1  # as an LLM's first token (``llm_conversation.FIRST_TOKEN_PRIORITY``)


class StreamHost(Protocol):
    """What a ``WhisperStream`` reads of the model that made it: the rate of its audio (Hz) and
    the audio one step consumes now (ms; the degradation ladder may change it between steps)."""

    sample_rate: int

    @property
    def chunk_ms(self) -> int: ...


@dataclass
class Word:
    """A committed word inside the window (forced prefix); ``text`` "" for a seam duplicate, heard
    again and forced silently."""

    text: str
    tokens: list[int]
    start_ms: float
    end_ms: float


class WhisperStream(SampleCounts):
    """One session's features, encoder state, decoder caches, policy and committed words.

    model: the ``StreamHost`` that made it (read for ``sample_rate`` and ``chunk_ms`` only).
    features / encoder_state / cache: the feature extractor, the encoder's state and the decoder's
    cache, each created by the model for this stream. window_frames: encoder frames in the window,
    kept equal to ``encoder.window_frames(encoder_state)`` by whoever steps or trims the encoder
    (``whisper_window.note_encoder``)."""

    # StepPending: the audio so far is stepped now; Finalize: and its words committed as final, the
    # audio after it a new segment (``whisper_window.new_segment``)
    input_kinds = frozenset({AudioChunk, StepPending, Finalize})

    def __init__(self, model: StreamHost, policy: Policy, sot: list[int], *, task: str, language: Any,
                 features: Any, encoder_state: Any, cache: Any, window_frames: int):
        self.model = model
        self.policy = policy
        self.sot = sot
        self.task = task
        self.language = language
        self.features = features
        self.encoder_state = encoder_state
        self.cache = cache
        self.window_frames = window_frames
        self.chunks: list[np.ndarray] = []  # received audio not consumed yet
        self._received = 0  # samples
        self._consumed = 0
        self._finished = False
        self.flushed = False  # the features' tail went to the encoder (the last encoder step)
        self.done = False
        self.window_changed = False  # the encoder window changed since the last decode
        self.window_start_ms = 0.0
        self.window_words: list[Word] = []  # committed words inside the window (forced prefix)
        self.prompt: list[int] = []  # committed tokens before the window
        self.committed_texts: list[str] = []
        self.committed_starts: list[float] = []  # media ms, parallel to committed_texts
        self.out: list[UnitDraft] = []
        self.partial: str | None = None
        self.skipped_decodes = 0  # steps without a decode since the last one (policy stride)
        # media ms of the first and the last token of the last decode (None: it heard nothing)
        self.heard_from_ms: float | None = None
        self.heard_until_ms: float | None = None
        # frames to keep in a trim decided during the step's commits, run for the whole batch at the
        # end of the step (``whisper_step``); None: no trim pending
        self.pending_trim: int | None = None
        self.stats = {"steps": 0, "trims": 0, "forced_trims": 0, "repetition_stops": 0, "seam_drops": 0,
                      "stall_resets": 0, "segments": 0}

    # ---- ModelStream ---------------------------------------------------------------------------
    def accept_audio(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if len(x):
            self.chunks.append(x)
            self._received += len(x)

    def is_ready(self) -> bool:
        if self.done or self.cancelled:
            return False
        return self._received - self._consumed >= self.chunk_samples() or self._finished or self.steps_pending()

    def urgency(self) -> Urgency:
        # a StepPending or Finalize: someone waits on the words (a dialogue's end of turn), as on an
        # LLM's first token
        return Urgency(priority=STEP_PENDING_PRIORITY) if self.steps_pending() else Urgency()

    def is_done(self) -> bool:
        return self.done or self.cancelled

    def pop_result(self) -> StepResult:
        out = StepResult(self.out, self.partial)
        self.out, self.partial = [], None
        return out

    # ---- what the step reads ---------------------------------------------------------------------
    def chunk_samples(self) -> int:
        """Samples one step consumes now."""
        return self.model.chunk_ms * self.model.sample_rate // 1000

    def take_samples(self, n: int) -> np.ndarray:
        """Consume up to ``n`` received samples (counted in ``consumed_ms``)."""
        if n <= 0:
            return np.zeros(0, np.float32)
        buf = np.concatenate(self.chunks) if len(self.chunks) > 1 else self.chunks[0]
        taken, rest = buf[:n], buf[n:]
        self.chunks = [rest] if len(rest) else []
        self._consumed += len(taken)
        return taken

    def is_final_step(self) -> bool:
        """True for the step that commits the whole hypothesis: every received sample consumed
        after end of input (``ends_input``: the stream's last step), or every sample before a
        ``Finalize`` (``ends_segment``: the stream goes on with a new segment)."""
        return self.ends_input() or self.ends_segment()

    def needs_decode(self) -> bool:
        """True when the window changed since the last decode, or at the end of a segment or of the stream. A cached
        encoder emits frames per block, so some steps add none: decoding the same window again
        would give the same hypothesis, which LocalAgreement must not count as a second vote."""
        return self.window_changed or self.is_final_step()

    def encoder_window_frames(self) -> int:
        """Encoder frames in the window now."""
        return self.window_frames

    def committed_end_ms(self) -> float:
        """Media time where the committed words in the window end (the window's start: none)."""
        return self.window_words[-1].end_ms if self.window_words else self.window_start_ms

    def has_context(self) -> bool:
        """Committed text the decoder is given: a prompt, or forced words in the window."""
        return bool(self.prompt or self.window_words)

    def take_pending_trim(self) -> int | None:
        """The frames to keep of a trim decided in this step's commits (None: none); the caller runs
        it (``encoder.trim_batch``) and gives the decoder the new window before the next step."""
        keep, self.pending_trim = self.pending_trim, None
        return keep
