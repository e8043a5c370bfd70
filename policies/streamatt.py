"""StreamAtt (Papi, Gaido, Negri, Bentivogli, ACL 2024): streaming over unbounded audio.

Decisions are AlignAtt's (write tokens before the first one attending to the last ``frames``
frames). What StreamAtt adds is *history selection*, so the context never grows without bound:

* textual history: only the last ``history_words`` committed words stay in the decoder's context
  (the paper's fixed-words selection);
* audio history: audio before the first retained word — located through the alignment derived
  from cross-attention — is discarded from the encoder window, so the retained text and the
  retained audio still correspond. ``max_history_ms`` caps the audio kept in any case (Whisper's
  encoder window is 30 s).

The task applies the selection (``select_history``) after each commit.
"""

from __future__ import annotations

from policies.alignatt import AlignAtt
from policies.base import HistorySelection, PolicyView
from streamrt.errors import PolicyOptionError


class StreamAtt(AlignAtt):
    name = "streamatt"
    options = {
        **AlignAtt.options,
        "history_words": (int, 20, "committed words kept as textual history (>= 0)"),
        "max_history_ms": (float, 20000.0, "most audio kept behind the newest source, ms (> 0)"),
    }

    def validate(self) -> None:
        super().validate()
        if self.history_words < 0:
            raise PolicyOptionError(f"policy 'streamatt' option 'history_words' must be >= 0, got {self.history_words}")
        if not self.max_history_ms > 0:
            raise PolicyOptionError(f"policy 'streamatt' option 'max_history_ms' must be > 0, got {self.max_history_ms}")

    def select_history(self, view: PolicyView) -> HistorySelection:
        keep = min(self.history_words, len(view.committed))
        cap_from = view.source_ms - self.max_history_ms
        if keep == 0 or len(view.committed_start_ms) < len(view.committed):
            # nothing retained (or no alignment): audio up to the last commit point can go
            start = view.committed_start_ms[-1] if keep == 0 and view.committed_start_ms else view.window_start_ms
            return HistorySelection(keep, max(start, cap_from, view.window_start_ms))
        first_kept = view.committed_start_ms[len(view.committed) - keep]
        return HistorySelection(keep, max(first_kept, cap_from, view.window_start_ms))
