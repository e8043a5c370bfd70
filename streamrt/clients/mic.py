"""Microphone capture (sounddevice / PortAudio) as an async stream of PCM chunks.

``MicUnavailable`` says in words why there is no microphone (PortAudio missing, no input device),
so the CLI can print it and exit 2 instead of a traceback.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import numpy as np

from streamrt.clients.ws_client import encode_pcm
from streamrt.errors import StreamrtError


class MicUnavailable(StreamrtError):
    code = "no_microphone"


def open_sounddevice():
    """Import sounddevice and find an input device; MicUnavailable says what is missing."""
    try:
        import sounddevice as sd
    except OSError as e:  # sounddevice raises OSError at import when libportaudio is absent
        raise MicUnavailable(
            f"no microphone: the PortAudio library is not installed ({e}); on Debian/Ubuntu: apt-get install libportaudio2"
        ) from None
    except ImportError:
        raise MicUnavailable("no microphone: the sounddevice package is not installed (pip install 'streamrt[mic]')") from None
    try:
        device = sd.query_devices(kind="input")
    except Exception as e:  # PortAudioError / ValueError when there is no default input
        raise MicUnavailable(f"no microphone: no audio input device found ({e})") from None
    if not device or device.get("max_input_channels", 0) < 1:
        raise MicUnavailable("no microphone: the default audio device has no input channels")
    return sd, device


async def mic_chunks(
    sample_rate: int = 16000,
    chunk_ms: float = 100.0,
    encoding: str = "pcm_s16le",
    max_s: float | None = None,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[bytes]:
    """Yield mono PCM chunks from the default input device until ``stop`` is set (or ``max_s``)."""
    sd, _ = open_sounddevice()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[np.ndarray] = asyncio.Queue(maxsize=100)
    blocksize = int(sample_rate * chunk_ms / 1000)

    def callback(indata, frames, time_info, status) -> None:  # PortAudio's thread
        loop.call_soon_threadsafe(_put, indata[:, 0].copy())

    def _put(x: np.ndarray) -> None:
        if not queue.full():  # drop audio rather than grow without bound if the sender stalls
            queue.put_nowait(x)

    sent = 0
    with sd.InputStream(samplerate=sample_rate, channels=1, dtype="float32", blocksize=blocksize, callback=callback):
        stopped = asyncio.ensure_future(stop.wait()) if stop is not None else asyncio.get_running_loop().create_future()
        try:
            while max_s is None or sent < max_s * sample_rate:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    return
                x = getter.result()
                sent += len(x)
                yield encode_pcm(x, encoding)
        finally:
            stopped.cancel()
