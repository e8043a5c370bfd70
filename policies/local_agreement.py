"""LocalAgreement-n (Polák et al. 2022; Macháček et al. 2023, whisper_streaming).

After every step the decoder re-transcribes the uncommitted audio. A word is committed once the last
``n`` hypotheses agree on it: the policy commits the longest common prefix (in words) of the last
``n`` full transcripts (committed words + hypothesis words). With n=2 this is whisper_streaming's
``HypothesisBuffer.flush``.

Notes on the split of work with the task (streamrt.tasks.whisper_stream):
- Seam de-duplication (whisper_streaming's ``HypothesisBuffer.insert``: drop up to 5 leading words
  of a new hypothesis that repeat the committed tail) is done by the task for every policy, before
  the view is built, because a ``Write`` can only commit a prefix, not skip one.
- Buffer trimming (dropping audio before the last committed word) is done by the task when a
  committed boundary allows.
- The task commits whole words only: a ``Write`` whose last word might still grow is cut back.
"""

from __future__ import annotations

from collections import deque

from policies.base import Action, Policy, PolicyView, Read, Write


class LocalAgreement(Policy):
    name = "local-agreement"
    options = {
        "n": (int, 2, "hypotheses that must agree on a word before it is committed (>= 1)"),
    }

    def validate(self) -> None:
        if self.n < 1:
            from streamrt.errors import PolicyOptionError

            raise PolicyOptionError(f"policy 'local-agreement' option 'n' must be >= 1, got {self.n}")

    def decodes_to_commit(self) -> int:
        return self.n

    def reset(self) -> None:
        # (words committed when the hypothesis was seen, the hypothesis' words)
        self._history: deque[tuple[int, tuple[str, ...]]] = deque(maxlen=self.n)

    def decide(self, view: PolicyView) -> Action:
        spans = view.word_spans()
        words = tuple(_norm("".join(t.text for t in view.hypothesis[a:b])) for a, b in spans)
        if view.source_finished:
            self._history.clear()
            return Write(len(view.hypothesis), final=True)
        n_committed = len(view.committed)
        self._history.append((n_committed, words))
        if len(self._history) < self.n:
            return Read()
        agreed = len(words)
        for then, old in self._history:
            # the old hypothesis, re-based onto what is committed now
            shift = n_committed - then
            if shift < 0:
                return Read()
            old = old[shift:]
            k = 0
            for a, b in zip(words, old):
                if a != b:
                    break
                k += 1
            agreed = min(agreed, k)
        if agreed == 0:
            return Read()
        return Write(spans[agreed - 1][1])


def _norm(word: str) -> str:
    return word.strip()
