"""load_tts: bad names and thread counts are named; the packaged voice loads as a TtsVoice."""

from __future__ import annotations

import numpy as np
import pytest

from streamrt.errors import ConfigError
from streamrt.models.tts import TtsVoice, load_tts


def test_unknown_voice_and_bad_threads_are_named():
    with pytest.raises(ConfigError, match="unknown TTS 'kokoro'; packaged: hibari"):
        load_tts("kokoro")
    with pytest.raises(ConfigError, match="threads must be an int >= 1, got 0"):
        load_tts("hibari", threads=0)


@pytest.mark.model
def test_packaged_hibari_speaks_24khz_float32():
    pytest.importorskip("hibari", reason="the agent extra: pip install 'streamrt[agent]'")
    voice = load_tts("hibari", threads=1, warm=False)
    assert isinstance(voice, TtsVoice)
    assert voice.describe() == {"tts": "hibari", "voice": "heart", "threads": 1, "sample_rate": 24000}
    a = voice.synthesize("Hello there.", speed=1.0, rng=np.random.default_rng(0))
    b = voice.synthesize("Hello there.", speed=1.0, rng=np.random.default_rng(0))
    assert a.dtype == np.float32 and 0.5 < len(a) / 24000 < 2.0 and np.array_equal(a, b)
