"""AlignAtt (Papi, Turchi, Negri, Interspeech 2023): emit while attention points at heard audio.

For each hypothesis token in order, take the frame its alignment-head cross-attention peaks at.
The policy writes the tokens before the first one whose peak falls within the last ``frames``
encoder frames of the window (that token is "still listening" to audio that may continue), and
reads when the very first token is such a one. With more frames the policy waits longer (higher
latency, fewer errors). At end of source everything is written.

``frames`` counts the model's encoder frames (20 ms for Whisper). The paper sweeps f over a few
frames of a 40 ms-frame encoder; Simul-Whisper (Wang et al. 2024), the same rule on Whisper, uses
f = 4 by default, which is ours.
"""

from __future__ import annotations

import numpy as np

from policies.base import Action, Policy, PolicyView, Read, Write
from streamrt.errors import PolicyOptionError


class AlignAtt(Policy):
    name = "alignatt"
    options = {
        "frames": (int, 4, "stop before the first token attending within the last f encoder frames (>= 1)"),
    }

    def validate(self) -> None:
        if self.frames < 1:
            raise PolicyOptionError(f"policy 'alignatt' option 'frames' must be >= 1, got {self.frames}")

    def stop_rule(self, n_frames: int):
        border = n_frames - self.frames
        return lambda attention: int(attention.argmax()) >= border

    def decide(self, view: PolicyView) -> Action:
        hyp = view.hypothesis
        if view.source_finished:
            return Write(len(hyp), final=True)
        border = view.n_frames - self.frames
        count = 0
        for tok in hyp:
            if tok.attention is None or len(tok.attention) == 0:
                # no alignment: fall back to the token's start time
                frame = view.frame_of_ms(tok.start_ms)
            else:
                frame = int(np.argmax(tok.attention))
            if frame >= border:
                break
            count += 1
        return Write(count) if count else Read()
