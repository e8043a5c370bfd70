"""EDAtt (Papi, Negri, Turchi, ICASSP 2023, "Attention as a Guide for Simultaneous Speech Translation").

Encoder-decoder attention decides: a token is emitted only while the attention it pays to the last
``lambda_frames`` encoder frames sums to less than ``alpha`` — a token that still looks at the most
recent audio may change when more audio comes. The policy writes the tokens before the first one
whose attention mass on the last frames is >= alpha (reads if that is the first token). Lower alpha
waits longer. Tokens without attention fall back to their aligned start time (inside the last frames
counts as concentrated). At end of source everything is written.

Defaults: the paper uses lambda = 2 frames of a 40 ms encoder (80 ms) and sweeps alpha over
0.6 ... 0.03; on Whisper's 20 ms frames we keep 80 ms (lambda_frames = 4) and alpha = 0.2.
"""

from __future__ import annotations

from policies.base import Action, Policy, PolicyView, Read, Write
from streamrt.errors import PolicyOptionError


class EDAtt(Policy):
    name = "edatt"
    options = {
        "alpha": (float, 0.2, "attention mass on the last frames at which a token waits (0 < alpha <= 1)"),
        "lambda_frames": (int, 4, "how many of the last encoder frames count as 'most recent audio' (>= 1)"),
    }

    def validate(self) -> None:
        if not 0 < self.alpha <= 1:
            raise PolicyOptionError(f"policy 'edatt' option 'alpha' must be in (0, 1], got {self.alpha}")
        if self.lambda_frames < 1:
            raise PolicyOptionError(f"policy 'edatt' option 'lambda_frames' must be >= 1, got {self.lambda_frames}")

    def recent_mass(self, view: PolicyView, index: int) -> float:
        """Attention of hypothesis token ``index`` on the last lambda frames of the window."""
        tok = view.hypothesis[index]
        border = max(0, view.n_frames - self.lambda_frames)
        if tok.attention is None or len(tok.attention) == 0:
            return 1.0 if view.frame_of_ms(tok.start_ms) >= border else 0.0
        return float(tok.attention[border:].sum())

    def stop_rule(self, n_frames: int):
        border = max(0, n_frames - self.lambda_frames)
        return lambda attention: float(attention[border:].sum()) >= self.alpha

    def decide(self, view: PolicyView) -> Action:
        if view.source_finished:
            return Write(len(view.hypothesis), final=True)
        count = 0
        for i in range(len(view.hypothesis)):
            if self.recent_mass(view, i) >= self.alpha:
                break
            count += 1
        return Write(count) if count else Read()
