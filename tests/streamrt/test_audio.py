import numpy as np
import pytest
import soundfile as sf

from streamrt.audio import StreamResampler, check_format, decode_pcm, load_audio
from streamrt.errors import AudioFormatError, DataError


def test_decode_s16le_scales_to_unit_range():
    x = decode_pcm(np.array([-32768, 0, 16384], "<i2").tobytes(), "pcm_s16le", 1)
    assert x.shape == (3, 1) and x[0, 0] == -1.0 and x[2, 0] == 0.5


def test_decode_rejects_partial_frames_naming_the_multiple():
    with pytest.raises(AudioFormatError, match="multiple of 4 bytes"):
        decode_pcm(b"\0" * 6, "pcm_s16le", 2)


@pytest.mark.parametrize("enc,rate,ch,code", [
    ("mp3", 16000, 1, "unsupported_encoding"),
    ("pcm_s16le", 100, 1, "unsupported_sample_rate"),
    ("pcm_s16le", 16000.5, 1, "unsupported_sample_rate"),
    ("pcm_s16le", 16000, 0, "unsupported_channels"),
    ("pcm_f32le", 16000, True, "unsupported_channels"),
])
def test_check_format_names_the_problem(enc, rate, ch, code):
    with pytest.raises(AudioFormatError) as e:
        check_format(enc, rate, ch)
    assert e.value.code == code and e.value.fatal


def test_streaming_resampler_matches_one_shot_length():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(48000).astype(np.float32) * 0.1
    rs = StreamResampler(48000, 16000)
    parts = [rs(x[i:i + 1234]) for i in range(0, len(x), 1234)] + [rs(np.zeros(0, np.float32), last=True)]
    y = np.concatenate(parts)
    assert abs(len(y) - 16000) <= 1


def test_load_audio_resamples_and_downmixes(tmp_path):
    p = tmp_path / "a.wav"
    t = np.arange(44100) / 44100
    sf.write(p, np.stack([np.sin(2 * np.pi * 440 * t)] * 2, 1), 44100)
    x = load_audio(p)
    assert x.dtype == np.float32 and x.ndim == 1 and abs(len(x) - 16000) <= 1


def test_load_audio_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(DataError, match="cannot read audio"):
        load_audio(bad)
