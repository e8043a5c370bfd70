"""What a dialogue session runs on: the shared models (four, and lip activity for a camera) and the host that steps them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from streamrt.engine import AudioModel, StreamingModel
from streamrt.stream_session import StreamSession


class StepHost(Protocol):
    """Where the session's sub-sessions are stepped: ``streamrt.scheduler.Scheduler``."""

    def add(self, session: StreamSession, on_output: Callable[[StreamSession], Any] | None = None, *,
            model: StreamingModel | None = None, background: bool = False) -> None: ...

    def wake(self, session: StreamSession) -> None: ...

    def cancel(self, session: StreamSession) -> None: ...


@dataclass(frozen=True)
class DialogueModels:
    """The shared models (loaded once, used by every session). asr: a 16 kHz ``AudioModel``
    (Whisper streaming); llm: an LLM conversation model (streams take ``TextDelta`` and
    ``ReplyHeard``); tts: a text-to-speech model (streams take ``TextDelta``, give audio at its
    ``sample_rate`` and one unit per spoken chunk); vad: a frame classifier at 16 kHz (streams give
    ``frame_scores``, ``frame_ms`` each); lips: optional, a lip-activity model (``LipActivityModel``:
    streams take ``VideoFrame`` and give ``lips``), needed for ``DialogueSession.receive_video``.
    asr_options / llm_options: each session's stream options."""

    asr: AudioModel
    llm: StreamingModel
    tts: StreamingModel
    vad: AudioModel
    lips: StreamingModel | None = None
    asr_options: Mapping[str, Any] = field(default_factory=dict)
    llm_options: Mapping[str, Any] = field(default_factory=dict)

    def add_to(self, scheduler) -> None:
        """Put the models on ``scheduler`` (once, before any session is added)."""
        for name in ("asr", "vad", "llm", "tts", "lips"):
            model = getattr(self, name)
            if model is not None and model not in scheduler.models:
                scheduler.add_model(model, name=name)
