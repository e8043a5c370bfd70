"""Scripted dialogues for ``streamrt dialogue eval``: the script file and the user's clips.

A script file (YAML, ``data/dialogues.yaml``) holds ``scripts:``, each ``{id, voice, gap_ms,
turns}``; a turn is ``{say, pause_s, backchannel, interrupt}``:

- ``say``: the text, or a list of parts spoken with ``pause_s`` (default 1.0 s) of silence between
  them: a mid-turn pause the agent should not take over;
- ``backchannel: {say, at_ms}``: spoken ``at_ms`` into the agent's answer to this turn; it should
  not stop the agent;
- ``interrupt: {say, at_ms}``: spoken ``at_ms`` into the agent's answer; the agent should stop
  and answer it.

Every clip is synthesized from its text (flite or espeak-ng), so the text is its exact reference;
the synthesizer's leading and trailing silence is cut, so a clip's first and last samples are
where the voice starts and ends (the true onset/offset the metrics use). Clips are cached as WAV
files keyed by voice and text (:class:`ClipSynth`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamrt.errors import ConfigError, DataError

SAMPLE_RATE = 16000
PEAK = 0.5  # every clip is scaled to this peak amplitude (full scale = 1.0)
TRIM_DB = -40.0  # 10 ms frames this far below the clip's peak are silence at its ends
FLITE_VOICES = ("slt", "kal16", "awb", "rms", "kal", "awb_time")


@dataclass(frozen=True)
class Overlay:
    """A clip spoken ``at_ms`` into the agent's answer (a backchannel or an interruption)."""

    text: str
    at_ms: float


@dataclass(frozen=True)
class ScriptTurn:
    parts: tuple[str, ...]
    pause_s: float = 1.0
    backchannel: Overlay | None = None
    interrupt: Overlay | None = None

    @property
    def text(self) -> str:
        return " ".join(self.parts)


@dataclass(frozen=True)
class Script:
    id: str
    voice: str
    turns: tuple[ScriptTurn, ...]
    gap_ms: float = 1000.0
    """Silence after the agent stops speaking before the user's next turn."""


def read_scripts(path: str | Path, only: list[str] | None = None) -> list[Script]:
    """The scripts of ``path`` (all, or those whose id is in ``only``, in that order). DataError
    names the file, the script and the problem."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise DataError(str(path), None, f"cannot read the script file: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("scripts"), list):
        raise DataError(str(path), None, "a script file is a mapping with a list under 'scripts'")
    scripts = []
    for n, s in enumerate(doc["scripts"], 1):
        try:
            scripts.append(_script(s))
        except (ValueError, TypeError, KeyError) as e:
            problem = f"missing key {e}" if isinstance(e, KeyError) else str(e)
            raise DataError(str(path), None, f"script {n}: {problem}") from None
    ids = [s.id for s in scripts]
    if len(set(ids)) != len(ids):
        raise DataError(str(path), None, f"script ids repeat: {ids}")
    if only:
        unknown = [i for i in only if i not in ids]
        if unknown:
            raise DataError(str(path), None, f"no script {unknown[0]!r}; the file has {', '.join(ids)}")
        scripts = [next(s for s in scripts if s.id == i) for i in only]
    return scripts


def _script(s: Any) -> Script:
    if not isinstance(s, dict):
        raise ValueError("a script is a mapping {id, voice, turns}")
    turns = tuple(_turn(t, k) for k, t in enumerate(s["turns"], 1))
    if not turns:
        raise ValueError("a script needs at least one turn")
    voice = str(s.get("voice", "slt"))
    check_voice(voice)
    gap = float(s.get("gap_ms", 1000.0))
    if gap < 0:
        raise ValueError(f"gap_ms must be >= 0, got {gap}")
    return Script(str(s["id"]), voice, turns, gap)


def _turn(t: Any, k: int) -> ScriptTurn:
    if not isinstance(t, dict):
        raise ValueError(f"turn {k} is a mapping with 'say'")
    say = t["say"]
    parts = tuple(str(p).strip() for p in (say if isinstance(say, list) else [say]))
    if not parts or not all(parts):
        raise ValueError(f"turn {k}: 'say' needs non-empty text")
    pause = float(t.get("pause_s", 1.0))
    if pause <= 0:
        raise ValueError(f"turn {k}: pause_s must be > 0, got {pause}")
    return ScriptTurn(parts, pause, _overlay(t.get("backchannel"), k, "backchannel"),
                      _overlay(t.get("interrupt"), k, "interrupt"))


def _overlay(o: Any, k: int, what: str) -> Overlay | None:
    if o is None:
        return None
    if not isinstance(o, dict) or not str(o.get("say", "")).strip() or "at_ms" not in o:
        raise ValueError(f"turn {k}: {what} is a mapping {{say, at_ms}}")
    at = float(o["at_ms"])
    if at < 0:
        raise ValueError(f"turn {k}: {what} at_ms must be >= 0, got {at}")
    return Overlay(str(o["say"]).strip(), at)


def check_voice(voice: str) -> None:
    if voice.startswith("espeak-ng:") or voice in FLITE_VOICES:
        return
    raise ValueError(f"unknown voice {voice!r}: use a flite voice ({', '.join(FLITE_VOICES)}) or espeak-ng:LANG")


def default_clip_dir() -> Path:
    """``dialogue-clips`` in streamrt's cache ($STREAMRT_CACHE, else ~/.cache/streamrt)."""
    from streamrt.models.whisper.packages import cache_root

    return cache_root() / "dialogue-clips"


class ClipSynth:
    """Speaks a text with a voice: mono float32 at 16 kHz, ends trimmed, peak PEAK. Each clip is
    kept in ``cache_dir`` under a hash of (voice, text) and read back on the next call."""

    def __init__(self, cache_dir: str | Path | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_clip_dir()

    def __call__(self, text: str, voice: str) -> np.ndarray:
        import soundfile as sf

        key = hashlib.sha1(f"{voice}\n{text}".encode()).hexdigest()[:16]
        path = self.cache_dir / f"{key}.wav"
        if path.exists():
            return sf.read(str(path), dtype="float32")[0]
        clip = trim_and_scale(_synthesize(text, voice))
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.wav")
        sf.write(str(tmp), clip, SAMPLE_RATE, subtype="FLOAT")
        tmp.replace(path)  # atomic: a concurrent run never reads half a file
        return clip


def _synthesize(text: str, voice: str) -> np.ndarray:
    import soundfile as sf
    import soxr

    check_voice(voice)
    tool = "espeak-ng" if voice.startswith("espeak-ng:") else "flite"
    if shutil.which(tool) is None:
        raise ConfigError(f"{tool} is not installed (apt-get install {tool}); it speaks the scripted user turns")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "clip.wav"
        if tool == "flite":
            argv = ["flite", "-voice", voice, "-t", text, "-o", str(wav)]
        else:
            argv = ["espeak-ng", "-v", voice.split(":", 1)[1], "-w", str(wav), text]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0 or not wav.exists():
            raise ConfigError(f"{tool} failed on {text!r} (exit {done.returncode}): {done.stderr.strip()[-300:]}")
        x, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if rate != SAMPLE_RATE:
        x = soxr.resample(x, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return x


def trim_and_scale(x: np.ndarray) -> np.ndarray:
    """Cut the leading/trailing 10 ms frames quieter than TRIM_DB below the peak; scale to PEAK."""
    frame = SAMPLE_RATE // 100
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak == 0.0:
        return x.astype(np.float32)
    n = len(x) // frame
    level = np.abs(x[: n * frame]).reshape(n, frame).max(axis=1)
    loud = np.flatnonzero(level >= peak * 10 ** (TRIM_DB / 20))
    if len(loud):
        x = x[loud[0] * frame: (loud[-1] + 1) * frame]
    return (x * (PEAK / peak)).astype(np.float32)
