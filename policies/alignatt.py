"""AlignAtt (Papi, Turchi, Negri, Interspeech 2023): emit while attention points at heard audio.

For each hypothesis token in order, take the frame its alignment-head cross-attention peaks at.
The policy writes the tokens before the first one whose peak falls within the last ``frames``
encoder frames of the window (that token is "still listening" to audio that may continue), and
reads when the very first token is such a one. With more frames the policy waits longer (higher
latency, fewer errors). At end of source everything is written (but a repeat, below).

``frames`` counts the model's encoder frames (20 ms for Whisper). The paper sweeps f over a few
frames of a 40 ms-frame encoder; Simul-Whisper (Wang et al. 2024), the same rule on Whisper, uses
f = 4 by default, which is ours.

``max_backjump`` (our addition, off by default): speech is read in order, so the peaks of a
hypothesis' tokens move forward. A token whose peak lies more than ``max_backjump`` frames before
the furthest point read so far (the start of the last committed word, then the peaks of the tokens
before it) is re-reading heard audio: Whisper repeating a phrase it has already transcribed (seen
on a clip ending "Fail again. Fail better.", decoded mid-word as "... Fail better. Fail better").
The policy writes only the tokens before it, at end of source too.
"""

from __future__ import annotations

import numpy as np

from policies.base import Action, Policy, PolicyView, Read, Write
from streamrt.errors import PolicyOptionError


class AlignAtt(Policy):
    name = "alignatt"
    options = {
        "frames": (int, 4, "stop before the first token attending within the last f encoder frames (>= 1)"),
        "max_backjump": (int, 0, "also stop before a token attending more than this many frames before the "
                                 "furthest point read so far (a repeat of heard speech; 0: off)"),
    }

    def validate(self) -> None:
        if self.frames < 1:
            raise PolicyOptionError(f"policy 'alignatt' option 'frames' must be >= 1, got {self.frames}")
        if self.max_backjump < 0:
            raise PolicyOptionError(f"policy 'alignatt' option 'max_backjump' must be >= 0 frames, got {self.max_backjump}")

    def stop_rule(self, n_frames: int):
        border = n_frames - self.frames
        return lambda attention: int(attention.argmax()) >= border

    def decide(self, view: PolicyView) -> Action:
        hyp = view.hypothesis
        # at end of source nothing more will be heard: every token is written (wherever it attends,
        # the silence padding past the window included), but a repeat
        border = float("inf") if view.source_finished else view.n_frames - self.frames
        furthest = view.frame_of_ms(view.committed_start_ms[-1]) if view.committed_start_ms else 0
        count = 0
        for tok in hyp:
            if tok.attention is None or len(tok.attention) == 0:
                # no alignment: fall back to the token's start time
                frame = view.frame_of_ms(tok.start_ms)
            else:
                frame = int(np.argmax(tok.attention))
            if frame >= border or (self.max_backjump and frame < furthest - self.max_backjump):
                break
            furthest = max(furthest, frame)
            count += 1
        if view.source_finished:
            return Write(count, final=True)
        return Write(count) if count else Read()
