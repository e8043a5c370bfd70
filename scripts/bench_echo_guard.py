"""The echo guard's settings against each other, offline (docs/benchmarks.md, "Barge-in reaction"):
hibari speaks AGENT_TEXTS (the agent's audio, as played); the session's own ``UserSpeech`` judges
silero's frames of

- the agent's echo alone at several gains (amplitude ratio to what is played): speech runs started,
  each of which would pause the agent (a self-pause; a barge-in if the ASR then hears 3 words);
- every interruption and backchannel clip of data/dialogues.yaml (its flite voice) spoken over the
  agent's audio with its echo at -14 dB (0.2), at ONSETS places with varied 32 ms frame phases:
  the reaction, from the voice's onset to the end of the frame where the speech run starts (when
  the session sends ``agent_pause``; the eval adds the models' compute to it).

    PYTHONPATH=. .venv/bin/python scripts/bench_echo_guard.py [THRESHOLD/RUN_MS ...]
    PYTHONPATH=. .venv/bin/python scripts/bench_echo_guard.py 0.85/160 0.85/96 0.7/96
"""
import itertools
import math
import sys

import numpy as np
import soxr

from streamrt.dialogue.playback import AgentTurn
from streamrt.dialogue.settings import DialogueSettings
from streamrt.dialogue.speech import UserSpeech
from streamrt.evaluation.dialogue_script import ClipSynth, read_scripts
from streamrt.models.tts.load import load_tts
from streamrt.models.vad import load_vad

AGENT_TEXTS = [  # answers SmolLM2 gave in `streamrt dialogue eval`
    "The Colosseum is an ancient Roman amphitheater, built in the 1st century BC. It's estimated to be around "
    "78 meters in diameter, making it one of the largest amphitheaters in the Roman Empire.",
    "To cook rice on a stove, you'll need a few basic ingredients. First, rinse the rice until the water runs "
    "clear, then add two cups of water for every cup of rice and bring it to a boil.",
    "The stars are a celestial wonder that never ceases to amaze and inspire. They're a reminder of the "
    "vastness of the universe and the beauty of the universe's mysteries.",
    "A black hole is a region in space where the gravitational pull is so strong that nothing, including "
    "light, can escape. It's a region where the fabric of spacetime is stretched and warped.",
    "Interviewers usually ask about your experience, your strengths and weaknesses, and why you want the job. "
    "Prepare a few short stories that show how you solved a problem.",
]
ECHO_GAINS = (0.2, 0.3, 0.5)
ONSETS = 6
SR = 16000
FRAME_MS = 32.0

configs = sys.argv[1:] or ["0.85/160", "0.85/128", "0.85/96", "0.7/96", "0.5/96"]
settings = {c: DialogueSettings(echo_threshold=float(c.split("/")[0]), echo_min_speech_ms=float(c.split("/")[1]))
            for c in configs}
tts = load_tts("hibari")
rng = np.random.default_rng(0)
agent24 = np.concatenate([tts.synthesize(t, speed=1.0, rng=rng) for t in AGENT_TEXTS]).astype(np.float32)
agent16 = soxr.resample(agent24, 24000, SR).astype(np.float32)
turn = AgentTurn(1, 24000)  # all of it released, played from 0
turn.add_audio(agent24)
turn.started, turn.released = True, turn.made
vad = load_vad()
print(f"agent audio: {len(agent16) / SR:.1f} s of hibari, RMS {np.sqrt(np.mean(agent16 ** 2)):.3f}")


def scores(x: np.ndarray) -> list[float]:
    stream = vad.create_stream()
    stream.accept_audio(x)
    while stream.is_ready():
        vad.step([stream])
    return stream.pop_result().frame_scores


def run_starts(s: DialogueSettings, x: np.ndarray, ps: list[float], start_ms: float = 0.0) -> list[float]:
    """Ends (ms into ``x``) of the frames where a speech run starts; ``x`` starts ``start_ms`` into
    the agent's audio."""
    speech = UserSpeech(s, FRAME_MS, SR)
    speech.add_audio(x)
    out = []
    for k, p in enumerate(ps):
        turn.played_ms = start_ms + (k + 1) * FRAME_MS  # the echo is of what plays now
        if speech.frame(p, turn):
            out.append((k + 1) * FRAME_MS)
    return out


print(f"\necho alone, speech runs started in {len(agent16) / SR:.0f} s of agent speech:")
print("| echo gain | " + " | ".join(configs) + " |\n|---|" + "---|" * len(configs))
for g in ECHO_GAINS:
    x = (g * agent16).astype(np.float32)
    ps = scores(x)
    print(f"| {g} ({20 * math.log10(g):.0f} dB) | " + " | ".join(str(len(run_starts(settings[c], x, ps))) for c in configs)
          + " |")

clips = sorted({(o.text, s.voice) for s in read_scripts("data/dialogues.yaml") for t in s.turns
                for o in (t.interrupt, t.backchannel) if o is not None})
synth = ClipSynth()
reaction: dict[str, list[float]] = {c: [] for c in configs}
missed = dict.fromkeys(configs, 0)
for (text, voice), k in itertools.product(clips, range(ONSETS)):
    clip = synth(text, voice)
    onset = 2 * SR + k * (len(agent16) - 5 * SR) // ONSETS  # spread over the agent's audio
    at = SR + (k * 89) % 512  # about a second of echo before the voice, at varied 32 ms frame phases
    lo = onset - at
    x = (0.2 * agent16[lo:lo + 3 * SR]).copy()
    n = min(len(clip), len(x) - at)
    x[at:at + n] += clip[:n]
    ps = scores(x)
    at_ms = 1000.0 * at / SR
    for c in configs:
        starts = [t - at_ms for t in run_starts(settings[c], x, ps, 1000.0 * lo / SR) if t > at_ms]
        if starts:
            reaction[c].append(starts[0])
        else:
            missed[c] += 1


def pct(v: list[float], q: float) -> float:
    v = sorted(v)
    return v[max(1, math.ceil(q / 100 * len(v))) - 1]


print(f"\n{len(clips)} user clips x {ONSETS} onsets over the agent's audio (echo 0.2): onset -> speech run starts")
print("| threshold / run | p50 | p90 | max | missed |\n|---|---|---|---|---|")
for c in configs:
    r = reaction[c]
    print(f"| {c} ms | {pct(r, 50):.0f} ms | {pct(r, 90):.0f} ms | {max(r):.0f} ms | {missed[c]} of {len(r) + missed[c]} |")
