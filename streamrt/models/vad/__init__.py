"""Voice activity detection: ``load_vad("silero")`` -> a ``SileroVad`` scheduler model (one ONNX
session shared, per-session recurrent state), speech probability per 32 ms frame at 16 kHz."""

from streamrt.models.vad.silero import FRAME_SAMPLES, SileroVad, VadStream, load_vad

__all__ = ["FRAME_SAMPLES", "SileroVad", "VadStream", "load_vad"]
