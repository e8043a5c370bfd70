"""``load_tts``: a packaged voice by name -> ``TtsVoice``.

hibari (PyPI ``hibari-tts``, Apache-2.0): phonemes from its own G2P, one ONNX forward per chunk
predicting a spectrum per 12.5 ms frame, then host-side DSP to a 24 kHz waveform. Its graph takes
one utterance at a time (``ids`` is ``[1, L]``, ``speed`` ``[1]``) and each utterance's frame count
comes from its own predicted durations, so chunks of several streams cannot share a forward; the
TTS task steps them one after another in one scheduler step.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

from streamrt.errors import ConfigError, ModelLoadError


@dataclass(frozen=True)
class PackagedVoice:
    """A voice shipped inside a pip package."""

    module: str
    voice: str
    pip: str


PACKAGED_TTS: dict[str, PackagedVoice] = {"hibari": PackagedVoice("hibari", "heart", "hibari-tts==0.2.1")}
DEFAULT_TTS = "hibari"


class HibariVoice:
    """The hibari model (one onnxruntime session with ``threads`` intra-op threads) and its G2P."""

    def __init__(self, engine, name: str, threads: int):
        self._engine = engine  # hibari.Hibari
        self.name = name
        self.voice = engine.voice
        self.threads = threads
        self.sample_rate = int(engine.sample_rate)

    def synthesize(self, text: str, *, speed: float, rng: np.random.Generator) -> np.ndarray:
        # phonemize splits sentences, and any over hibari's phoneme limit at clause punctuation
        parts = [self._engine.from_ids(self._engine.ids(ps), speed, rng) for ps in self._engine.phonemize(text)]
        return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)

    def describe(self) -> dict:
        return {"tts": self.name, "voice": self.voice, "threads": self.threads, "sample_rate": self.sample_rate}


def load_tts(name: str = DEFAULT_TTS, *, threads: int = 1, warm: bool = True) -> HibariVoice:
    """Load packaged voice ``name`` ("hibari") with ``threads`` onnxruntime threads (1 is enough:
    it runs tens of times faster than real time on one core). ``warm``: also load the G2P
    lexicons and run one short synthesis now, so the first turn does not pay for them (~0.5 s)."""
    if name not in PACKAGED_TTS:
        raise ConfigError(f"unknown TTS {name!r}; packaged: {', '.join(sorted(PACKAGED_TTS))}")
    if not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"TTS threads must be an int >= 1, got {threads!r}")
    pkg = PACKAGED_TTS[name]
    if importlib.util.find_spec(pkg.module) is None:
        raise ModelLoadError(f"TTS {name!r} needs the {pkg.pip} package: pip install '{pkg.pip}' "
                             "(or the streamrt[agent] extra)")
    from hibari import Hibari

    voice = HibariVoice(Hibari(voice=pkg.voice, threads=threads), name, threads)
    if warm:
        voice.synthesize("Ready.", speed=1.0, rng=np.random.default_rng(0))
    return voice
