"""Feature extraction: Whisper log-mel, offline and incremental (same frames on the same samples)."""

from streamrt.features.logmel import LogMelStream, log_mel_offline

__all__ = ["LogMelStream", "log_mel_offline"]
