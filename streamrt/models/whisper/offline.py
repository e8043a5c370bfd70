"""Offline reference transcription: greedy decoding over 30 s windows, no timestamps.

It follows faster-whisper 1.2 with ``beam_size=1, temperature=0, without_timestamps=True,
condition_on_previous_text=False, no_speech_threshold=None, vad_filter=False`` so the two can be
compared token for token:
- log-mel of the whole recording (plus 160 zero samples), clamped at (global max - 8), so the
  clamp floor is shared by all windows;
- windows of 3000 frames taken back to back; the last one is padded with zero *features*;
- every step suppresses ``bundle.suppress_tokens``; the first generated step also suppresses
  ``bundle.begin_suppress_tokens``; decoding stops at end-of-text or after
  ``max_new_tokens(bundle)`` tokens (224 = half the decoder's 448 positions, as in OpenAI's
  ``sample_len`` and CTranslate2).
"""

from __future__ import annotations

import numpy as np
import torch

from streamrt.errors import ConfigError
from streamrt.models.whisper.bundle import WhisperBundle

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
WINDOW_FRAMES = 3000  # 30 s of 10 ms mel frames
_FILTERS: dict[int, torch.Tensor] = {}


def _mel_filters(n_mels: int) -> torch.Tensor:
    if n_mels not in _FILTERS:
        from transformers.audio_utils import mel_filter_bank

        bank = mel_filter_bank(
            num_frequency_bins=N_FFT // 2 + 1,
            num_mel_filters=n_mels,
            min_frequency=0.0,
            max_frequency=SAMPLE_RATE / 2,
            sampling_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        _FILTERS[n_mels] = torch.from_numpy(np.asarray(bank, dtype=np.float32).T.copy())
    return _FILTERS[n_mels]


def log_mel_recording(audio_16k: np.ndarray, n_mels: int = 80, pad_samples: int = HOP) -> torch.Tensor:
    """(n_mels, frames) normalized log-mel of a whole recording, one clamp floor for all of it."""
    x = torch.as_tensor(np.asarray(audio_16k, dtype=np.float32))
    if x.ndim != 1:
        raise ValueError(f"audio must be mono 1-D samples at 16 kHz, got shape {tuple(x.shape)}")
    if pad_samples:
        x = torch.nn.functional.pad(x, (0, pad_samples))
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True, pad_mode="reflect", return_complex=True)
    power = spec[:, :-1].abs() ** 2
    mel = _mel_filters(n_mels) @ power
    log = torch.clamp(mel, min=1e-10).log10()
    log = torch.maximum(log, log.max() - 8.0)
    return (log + 4.0) / 4.0


def _windows(mel: torch.Tensor) -> list[torch.Tensor]:
    content = mel.shape[1] - 1
    out = []
    for seek in range(0, max(content, 1), WINDOW_FRAMES):
        seg = mel[:, seek : seek + min(WINDOW_FRAMES, content - seek)]
        out.append(torch.nn.functional.pad(seg, (0, WINDOW_FRAMES - seg.shape[1])))
    return out


@torch.inference_mode()
def encode_window(bundle: WhisperBundle, window_mel: torch.Tensor) -> torch.Tensor:
    """Encoder output (1, 1500, d_model) of one (n_mels, 3000) window."""
    device = bundle.model.device
    return bundle.model.model.encoder(window_mel[None].to(device)).last_hidden_state


def _step(bundle: WhisperBundle, enc: torch.Tensor, ids: list[int], cache):
    out = bundle.model(
        encoder_outputs=(enc,),
        decoder_input_ids=torch.tensor([ids], device=enc.device),
        past_key_values=cache,
        use_cache=True,
    )
    return out.logits[0, -1].float(), out.past_key_values


def _new_cache():
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    return EncoderDecoderCache(DynamicCache(), DynamicCache())


@torch.inference_mode()
def detect_language(bundle: WhisperBundle, enc: torch.Tensor) -> str:
    """The most likely language code of an encoded window (multilingual models only)."""
    if not bundle.multilingual:
        return "en"
    logits, _ = _step(bundle, enc, [bundle.sot], _new_cache())
    codes = list(bundle.language_ids)
    ids = torch.tensor([bundle.language_ids[c] for c in codes], device=logits.device)
    return codes[int(logits[ids].argmax())]


def max_new_tokens(bundle: WhisperBundle) -> int:
    """Most tokens generated per window: half the decoder positions (224 for Whisper)."""
    return bundle.max_target_positions // 2


@torch.inference_mode()
def greedy_decode(bundle: WhisperBundle, enc: torch.Tensor, prompt: list[int]) -> list[int]:
    """Greedy tokens after ``prompt`` for one encoded window (end-of-text not included)."""
    suppress = torch.tensor(bundle.suppress_tokens, dtype=torch.long, device=enc.device)
    begin = torch.tensor(bundle.begin_suppress_tokens, dtype=torch.long, device=enc.device)
    cache = _new_cache()
    logits, cache = _step(bundle, enc, prompt, cache)
    tokens: list[int] = []
    limit = min(max_new_tokens(bundle), bundle.max_target_positions - len(prompt))
    while True:
        logits[suppress] = -float("inf")
        if not tokens:
            logits[begin] = -float("inf")
        token = int(logits.argmax())
        if token == bundle.eot:
            break
        tokens.append(token)
        if len(tokens) >= limit:
            break
        logits, cache = _step(bundle, enc, [token], cache)
    return tokens


def transcribe_offline_tokens(
    bundle: WhisperBundle, audio_16k: np.ndarray, *, task: str = "transcribe", language: str | None = None
) -> list[list[int]]:
    """Greedy tokens of each 30 s window. ``language=None`` detects it on the first window
    (multilingual models); raises ConfigError for a task or language the model cannot do."""
    bundle.sot_sequence(task, language)  # validates task/language before any compute
    windows = _windows(log_mel_recording(audio_16k, bundle.n_mels))
    results = []
    for i, window in enumerate(windows):
        enc = encode_window(bundle, window)
        if i == 0 and language is None and bundle.multilingual:
            language = detect_language(bundle, enc)
        results.append(greedy_decode(bundle, enc, bundle.sot_sequence(task, language)))
    return results


def transcribe_offline(
    bundle: WhisperBundle, audio_16k: np.ndarray, *, task: str = "transcribe", language: str | None = None
) -> str:
    """The offline reference text of mono 16 kHz float32 audio (greedy, 30 s windows)."""
    if audio_16k is None or len(audio_16k) == 0:
        raise ConfigError("transcribe_offline needs at least one audio sample")
    windows = transcribe_offline_tokens(bundle, audio_16k, task=task, language=language)
    return "".join(bundle.tokenizer.decode(t) for t in windows).strip()
