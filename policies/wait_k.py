"""Wait-k with fixed pre-decision for speech (Ma, Pino, Koehn, AACL 2020, "SimulMT to SimulST").

The source is cut into fixed segments of ``segment_ms`` (the fixed pre-decision module); after the
first ``k`` segments the policy alternates one write and one read: with n whole segments read, at
most ``n - k + 1`` target words may be committed in total. Units are words (Whisper's BPE tokens are
grouped into words, see ``policies.base.word_spans``); a word is only committed once the hypothesis
shows the next word starting, so it cannot still grow. At end of source everything is written.

Defaults: k = 3 and segment_ms = 280 (the paper's best pre-decision step is 7 frames of 40 ms).
"""

from __future__ import annotations

from policies.base import Action, Policy, PolicyView, Read, Write
from streamrt.errors import PolicyOptionError


class WaitK(Policy):
    name = "wait-k"
    options = {
        "k": (int, 3, "segments read before the first write (>= 1)"),
        "segment_ms": (float, 280.0, "fixed pre-decision segment, ms of source (> 0)"),
    }

    def validate(self) -> None:
        if self.k < 1:
            raise PolicyOptionError(f"policy 'wait-k' option 'k' must be >= 1, got {self.k}")
        if not self.segment_ms > 0:
            raise PolicyOptionError(f"policy 'wait-k' option 'segment_ms' must be > 0 ms, got {self.segment_ms}")

    def allowed_words(self, source_ms: float) -> int:
        """Total words that may be committed after reading ``source_ms`` of source."""
        segments = int(source_ms // self.segment_ms)
        return max(0, segments - self.k + 1)

    def decide(self, view: PolicyView) -> Action:
        if view.source_finished:
            return Write(len(view.hypothesis), final=True)
        spans = view.word_spans()
        complete = spans[:-1]  # the last word may still grow
        budget = self.allowed_words(view.source_ms) - len(view.committed)
        n = min(budget, len(complete))
        return Write(complete[n - 1][1]) if n > 0 else Read()
