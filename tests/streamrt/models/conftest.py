"""Session fixtures for the real-weight tests: each model converted/loaded once, the reference
(faster-whisper on the same CTranslate2 files) loaded once, and speech clips: the moonshine-voice
recordings plus sentences synthesized here with espeak-ng / flite (16 kHz after resampling)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from streamrt.audio import load_audio
from tests.streamrt.models.model_refs import SYNTH


def _bundle(name: str):
    from streamrt.models.whisper import load_whisper
    from streamrt.models.whisper.packages import PACKAGED, locate

    try:
        locate(name)
    except Exception as exc:  # the pip package is not installed: skip, naming it
        pytest.skip(str(exc))
    assert name in PACKAGED
    return load_whisper(name)


@pytest.fixture(scope="session")
def tiny_bundle():
    return _bundle("tiny.en")


@pytest.fixture(scope="session")
def base_bundle():
    return _bundle("base")


def _reference(name: str):
    faster_whisper = pytest.importorskip("faster_whisper")
    from streamrt.models.whisper.packages import packaged_ct2_dir

    return faster_whisper.WhisperModel(str(packaged_ct2_dir(name)), device="cpu", compute_type="float32", cpu_threads=1)


@pytest.fixture(scope="session")
def tiny_reference(tiny_bundle):
    return _reference("tiny.en")


@pytest.fixture(scope="session")
def base_reference(base_bundle):
    return _reference("base")


@pytest.fixture(scope="session")
def speech_clips(tmp_path_factory) -> dict[str, np.ndarray]:
    """name -> mono float32 16 kHz audio. Synthesized clips appear only where the tool exists."""
    clips: dict[str, np.ndarray] = {}
    spec = importlib.util.find_spec("moonshine_voice")
    if spec is not None:
        assets = Path(next(iter(spec.submodule_search_locations))) / "assets"
        for name in ("beckett", "two_cities"):
            if (assets / f"{name}.wav").is_file():
                clips[name] = load_audio(assets / f"{name}.wav")
    folder = tmp_path_factory.mktemp("synth")
    for name, tool, voice, wpm, text in SYNTH:
        if shutil.which(tool) is None:
            continue
        out = folder / f"{name}.wav"
        if tool == "espeak-ng":
            cmd = [tool, "-v", voice, *(["-s", str(wpm)] if wpm else []), "-w", str(out), text]
        else:
            cmd = [tool, "-voice", voice, "-t", text, "-o", str(out)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        clips[name] = load_audio(out)
    return clips
